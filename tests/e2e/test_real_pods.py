"""The user's path on a real node: Siesta's images, the chart, a model woken from zero.

`make images` builds the images; a control plane of its own (`<SIESTA_CLUSTER_NAME>-pods`)
gets a real node (kubelet + containerd + runc + CNI + kube-proxy, kit/cluster/node.sh).
Then, as a user would: `helm install` of charts/siesta with those images (operator and
gateway run as containers in pods, in-cluster config, the chart's ServiceAccounts and
securityContext), a CPU model served over http:// by a file server pod behind a Service
(download into the cache PVC, cut once and resumed, sha256 check), woken from zero by the
`openai` client through the gateway's Service, back to zero with its pod draining on the way
out; `helm upgrade` to a new image tag rolls the control plane without waking the model;
`helm upgrade` to a new server image leaves a model that is streaming untouched until the
stream ends, then replaces its pod; `helm uninstall` leaves nothing behind. The tests build
on each other, in file order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2  # the openai client's HTTP library
import openai
import pytest

from localworld.cluster import Cluster, holds, is_ready, wait_for
from localworld.helm import CHART, NAMESPACE, RELEASE
from localworld.real_node import (
    GPU_TOLERATION,
    NODE,
    NODE_SELECTOR,
    helm_on,
    images,
    start_real_cluster,
    stop_real_cluster,
    tag_in_node,
    values_file,
)
from localworld.tiny_gguf import write_tiny_llama
from siesta.api.contract import MODEL_LABEL

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.llama]

MODELS = "ai"
FILES = "files"
MODEL = "tiny-real"
PRESTOP_SECONDS = 5  # operator/render.py: the server's preStop sleep
FILE_SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "kit" / "localworld" / "file_servers.py"
CUT_AFTER = 128 * 1024  # the first download of the model ends here: it must resume


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    try:
        return images()
    except Exception as exc:
        pytest.fail(f"make images failed: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def cluster_name() -> str:
    return os.environ.get("SIESTA_CLUSTER_NAME", "siesta") + "-pods"


@pytest.fixture(scope="module")
def real(built: dict[str, str], cluster_name: str) -> Iterator[Cluster]:
    try:
        running = start_real_cluster(cluster_name)
    except Exception as exc:
        pytest.fail(f"cluster with a real node did not start: {exc}", pytrace=False)
    yield running
    if running.started_here and os.environ.get("SIESTA_KEEP_CLUSTER") != "1":
        stop_real_cluster(cluster_name)


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return items


def _service_url(cluster: Cluster, namespace: str, name: str) -> str:
    service = cluster.get_json("service", name, "-n", namespace)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def _replicas(cluster: Cluster) -> int:
    sts = cluster.get_json("statefulset", MODEL, "-n", MODELS)
    return int(sts["spec"].get("replicas") or 0)


def test_install_runs_siesta_in_pods(real: Cluster, built: dict[str, str], tmp_path: Path) -> None:
    values = values_file(real, built, tmp_path / "values.yaml")
    helm_on(
        real, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
        "-f", values, "--wait", "--timeout=5m",
    )  # fmt: skip
    for component in ("operator", "gateway"):
        pods = _pods(real, NAMESPACE, f"app.kubernetes.io/component={component}")
        assert len(pods) == 1, pods
        pod = pods[0]
        assert pod["spec"]["nodeName"] == NODE
        assert pod["spec"]["serviceAccountName"] == f"siesta-{component}"
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"], status
        assert "running" in status["state"], status
        assert status["image"].endswith(built["SIESTA_IMAGE"].removeprefix("localhost/"))
        # The chart's hardening, as the container runtime applied it.
        name = pod["metadata"]["name"]
        exec_ = ["exec", "-n", NAMESPACE, name, "--"]
        assert real.kubectl(*exec_, "id", "-u").stdout.strip() == "65532"
        touch = real.kubectl(*exec_, "touch", "/probe", check=False)
        assert touch.returncode != 0
        assert "Read-only file system" in touch.stderr
        capabilities = real.kubectl(*exec_, "grep", "CapEff", "/proc/self/status").stdout
        assert capabilities.split()[-1] == "0000000000000000"
    logs = real.kubectl("logs", "-n", NAMESPACE, "deploy/siesta-operator").stdout
    assert "Forbidden" not in logs


def _file_server(cluster: Cluster, built: dict[str, str], directory: Path) -> str:
    """A pod serving `directory` over HTTP behind a Service; returns the Service's URL.

    Its server (kit/localworld/file_servers.py, run as a script) drops the first download of
    each file after CUT_AFTER bytes, so the model's download has to resume."""
    shutil.copy(FILE_SERVER_SCRIPT, directory / FILE_SERVER_SCRIPT.name)
    server_args = ["--directory", "/srv", "--port", "8000", "--cut-after", str(CUT_AFTER)]
    cluster.kubectl("create", "namespace", FILES, check=False)
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", FILES, "--timeout=60s")
    labels = {"app": "models"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "models", "namespace": FILES, "labels": labels},
        "spec": {
            "nodeSelector": NODE_SELECTOR,
            "tolerations": [GPU_TOLERATION],
            "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
            "containers": [
                {
                    "name": "http",
                    "image": built["SIESTA_SERVER_IMAGE"],
                    "imagePullPolicy": "Never",
                    "command": ["python3", f"/srv/{FILE_SERVER_SCRIPT.name}", *server_args],
                    "ports": [{"containerPort": 8000}],
                    "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                    "volumeMounts": [{"name": "files", "mountPath": "/srv", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "files", "hostPath": {"path": str(directory)}}],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "models", "namespace": FILES},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8000}]},
    }
    # A pod's volumes cannot change: a rerun on a kept cluster replaces it.
    cluster.kubectl("delete", "pod", "models", "-n", FILES, "--ignore-not-found", "--wait=true")
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": [pod, service]})
    cluster.kubectl("wait", "--for=condition=Ready", "pod/models", "-n", FILES, "--timeout=120s")
    return _service_url(cluster, FILES, "models")


def _model(uri: str, sha256: str) -> dict[str, Any]:
    return {
        "apiVersion": "siesta.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": MODEL, "namespace": MODELS},
        "spec": {
            "model": {"uri": uri, "sha256": sha256},
            "scaling": {"wakeTimeout": "5m", "idleTimeout": "20s", "scaleDownDelay": "1s"},
            "replicas": {"min": 0, "max": 1},
            "cache": {"size": "1Gi"},
            # The operator's own GPU affinity and toleration put it on the real node's "T4";
            # the selector keeps it off the kwok nodes of the same pool.
            "gpu": {"count": 1, "nodeSelector": NODE_SELECTOR},
            # The real node's GPU is a stand-in: a GPU model computes on the CPU only when it
            # says so, or the server refuses to start (--require-gpu).
            "server": {"gpuLayers": 0},
        },
    }


class PodWatch:
    """Samples the model's pods in the background: what ran where, and how it ended."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: dict[str, dict[str, Any]] = {}
        self.terminating_since: dict[str, float] = {}
        self.uid_terminating_since: dict[str, float] = {}  # pods of one name, told apart
        self.gone_at: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stop.is_set():
            result = self.cluster.kubectl(
                "get", "pods", "-n", MODELS, "-l", f"{MODEL_LABEL}={MODEL}", "-o", "json",
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                now = time.monotonic()
                current = {p["metadata"]["name"]: p for p in json.loads(result.stdout)["items"]}
                for name, pod in current.items():
                    self.seen[name] = pod
                    if pod["metadata"].get("deletionTimestamp"):
                        self.terminating_since.setdefault(name, now)
                        self.uid_terminating_since.setdefault(pod["metadata"]["uid"], now)
                for name in self.seen:
                    if name not in current:
                        self.gone_at.setdefault(name, now)
            self.stop.wait(0.2)


def test_a_request_wakes_a_model_in_a_real_pod(
    real: Cluster, built: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    files = tmp_path_factory.mktemp("files")
    files.chmod(0o755)
    gguf = write_tiny_llama(files / "tiny.gguf")
    gguf.chmod(0o644)
    assert gguf.stat().st_size > CUT_AFTER
    sha256 = hashlib.sha256(gguf.read_bytes()).hexdigest()
    files_url = _file_server(real, built, files)
    real.kubectl("create", "namespace", MODELS, check=False)
    real.kubectl("wait", "--for=create", "serviceaccount/default", "-n", MODELS, "--timeout=60s")
    real.apply(_model(f"{files_url}/tiny.gguf", sha256))

    def phase() -> Any:
        md = real.get_json("modeldeployment", MODEL, "-n", MODELS)
        return md.get("status", {}).get("phase") == "ScaledToZero"

    wait_for("the model asleep (ScaledToZero)", phase, timeout=120)
    gateway = _service_url(real, NAMESPACE, "siesta-gateway")
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="-", timeout=300, max_retries=0)
    wait_for(
        "the gateway to list the model",
        lambda: MODEL in [m.id for m in client.models.list().data],
        timeout=60,
    )
    assert _pods(real, MODELS, f"{MODEL_LABEL}={MODEL}") == []

    with PodWatch(real) as watch:
        sent = time.monotonic()
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello"}],
            max_tokens=8,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        first_token = None
        text = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first_token = first_token or time.monotonic() - sent
                text += chunk.choices[0].delta.content
        assert text
        assert first_token is not None
        print(f"\ncold start through real pods: first token {first_token:.1f}s after the request")

        pod = next(iter(watch.seen.values()))
        assert pod["spec"]["nodeName"] == NODE
        assert pod["spec"]["containers"][0]["image"] == built["SIESTA_SERVER_IMAGE"]
        claim = real.get_json("pvc", "-n", MODELS)["items"][0]
        assert claim["status"]["phase"] == "Bound"
        assert claim["spec"]["storageClassName"] == "siesta-local"
        # The download (parallel ranged reads) was cut once and its part resumed where it
        # stopped: every byte was sent once.
        log = real.kubectl("logs", "-n", FILES, "models").stdout.splitlines()
        gets = [json.loads(line) for line in log if line.startswith("{")]
        assert gets[0]["path"] == "/tiny.gguf", gets
        assert gets[0]["range"].startswith("bytes=0-"), gets
        assert gets[0]["sent"] == CUT_AFTER, gets
        assert any(g["range"].startswith(f"bytes={CUT_AFTER}-") for g in gets[1:]), gets
        assert sum(g["sent"] for g in gets) == gguf.stat().st_size, gets

        wait_for("the model back at zero", lambda: _replicas(real) == 0, timeout=120)
        wait_for("its pod gone", lambda: watch.gone_at, timeout=120)
    name = pod["metadata"]["name"]
    # The kubelet ran the preStop sleep (the gateway stops routing) before SIGTERM.
    drained = watch.gone_at[name] - watch.terminating_since[name]
    assert drained >= PRESTOP_SECONDS - 0.5, f"pod gone {drained:.1f}s after deletion"
    md = real.get_json("modeldeployment", MODEL, "-n", MODELS)
    assert md["status"]["phase"] == "ScaledToZero", md["status"]


def test_upgrade_rolls_the_control_plane_without_waking_models(
    real: Cluster, built: dict[str, str], cluster_name: str, tmp_path: Path
) -> None:
    new_tag = built["SIESTA_IMAGE"].rpartition(":")[2] + "-next"
    new_image = built["SIESTA_IMAGE"].rpartition(":")[0] + ":" + new_tag
    tag_in_node(cluster_name, built["SIESTA_IMAGE"], new_image)
    values = values_file(real, built, tmp_path / "values.yaml", tag=new_tag)
    with PodWatch(real) as watch:
        helm_on(
            real, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", values,
            "--wait", "--timeout=5m",
        )  # fmt: skip
        for component in ("operator", "gateway"):
            deployment = f"deploy/siesta-{component}"
            real.kubectl("rollout", "status", deployment, "-n", NAMESPACE, "--timeout=180s")
            selector = f"app.kubernetes.io/component={component}"

            def only_new_pods(selector: str = selector) -> bool:
                # The old pod may still be terminating (draining) after the rollout.
                pods = _pods(real, NAMESPACE, selector)
                return {p["spec"]["containers"][0]["image"] for p in pods} == {new_image}

            wait_for(f"the {component}'s old pod gone", only_new_pods, timeout=120)
    assert watch.seen == {}  # no model pod while the control plane rolled
    assert _replicas(real) == 0
    md = real.get_json("modeldeployment", MODEL, "-n", MODELS)
    assert md["status"]["phase"] == "ScaledToZero"


# The long stream of the rolling test. The client reads one chunk per SLOW_READ_SECONDS until
# the test has seen what it waits for (a phone on a slow link), then as fast as it comes. Its
# ~2 MB of SSE (two choices of STREAM_TOKENS, about 250 bytes a token) are far more than the
# sockets between the gateway and a reader with a small receive buffer hold (well under 1 MB
# over a veth), so the gateway forwards it, in flight, until the reader hurries, however fast
# the model generates. A slot for each choice, and one spare.
STREAM_CHOICES = 2
STREAM_SLOTS = STREAM_CHOICES + 1
STREAM_SLOT_CONTEXT = 4096
STREAM_TOKENS = 3900  # per choice; with the prompt, within a slot
SLOW_READ_SECONDS = 0.2
SLOW_READER_BUFFER = 16 * 1024  # bytes: the socket's receive buffer
STREAM_END_SECONDS = 480  # a bound for the rest of the generation on a busy machine


def _condition(cluster: Cluster, kind: str) -> dict[str, Any]:
    md = cluster.get_json("modeldeployment", MODEL, "-n", MODELS)
    found = [c for c in md.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else {}


def _model_pod(cluster: Cluster) -> dict[str, Any] | None:
    """The model's pod that is not being deleted (None if there is none)."""
    live = [
        p for p in _pods(cluster, MODELS, f"{MODEL_LABEL}={MODEL}")
        if not p["metadata"].get("deletionTimestamp")
    ]  # fmt: skip
    assert len(live) <= 1, [p["metadata"]["name"] for p in live]
    return live[0] if live else None


def _template(cluster: Cluster) -> dict[str, Any]:
    """The server container of the model's StatefulSet template."""
    sts = cluster.get_json("statefulset", MODEL, "-n", MODELS)
    container: dict[str, Any] = sts["spec"]["template"]["spec"]["containers"][0]
    return container


@contextmanager
def _explained(cluster: Cluster) -> Iterator[None]:
    """On failure, print what the model, its pods, Leases and Events say (pytest shows it)."""
    try:
        yield
    except BaseException:
        for args in (
            ("get", "modeldeployment", MODEL, "-n", MODELS, "-o", "jsonpath={.status}"),
            ("get", "statefulset,pods,leases", "-n", MODELS, "-o", "wide"),
            ("get", "leases", "-n", MODELS, "-o", "jsonpath={.items[*].metadata.annotations}"),
            ("get", "events", "-n", MODELS, "--sort-by=.lastTimestamp"),
            ("logs", "-n", NAMESPACE, "deploy/siesta-operator", "--tail=60"),
        ):
            result = cluster.kubectl(*args, check=False)
            print(f"\n$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
        raise


class SlowReader:
    """A streamed chat completion read on a thread, one chunk per SLOW_READ_SECONDS (a client
    on a slow link) until `hurry` is set, then as fast as it comes; what came, and when."""

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client
        self.hurry = threading.Event()
        self.chunks = 0
        self.finish_reasons: dict[int, str] = {}
        self.completion_tokens: int | None = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            stream = self.client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Tell me a long story"}],
                max_tokens=STREAM_TOKENS,
                n=STREAM_CHOICES,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            for chunk in stream:
                self.chunks += 1
                if chunk.usage is not None:
                    self.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.finish_reason:
                        self.finish_reasons[choice.index] = choice.finish_reason
                self.hurry.wait(SLOW_READ_SECONDS)  # no wait once hurried
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.ended_at = time.monotonic()

    @property
    def streaming(self) -> bool:
        return self.error is None and self.ended_at is None


def test_a_new_server_image_waits_for_the_stream_to_end(
    real: Cluster, built: dict[str, str], cluster_name: str
) -> None:
    """`helm upgrade` to a new server image changes the model's StatefulSet template while a
    slow client streams a long answer: the pod keeps serving it, the status says an update
    is pending, and once the stream has ended the operator replaces the pod. The stream is
    the model's only request and runs longer than its idleTimeout (2m) and the demand Lease's
    30 s: the gateway renews its Lease while it runs, so the model is never idle under it."""
    new_server = built["SIESTA_SERVER_IMAGE"] + "-next"
    tag_in_node(cluster_name, built["SIESTA_SERVER_IMAGE"], new_server)
    # Room for the long answer, and an idle timeout that outlasts the pod's replacement (the
    # model is at zero: its next pod starts with these).
    room = {
        "server": {"contextSize": STREAM_SLOTS * STREAM_SLOT_CONTEXT, "parallel": STREAM_SLOTS},
        "scaling": {"idleTimeout": "2m"},
    }
    real.kubectl(
        "patch", "modeldeployment", MODEL, "-n", MODELS, "--type=merge",
        "-p", json.dumps({"spec": room}),
    )  # fmt: skip
    gateway = _service_url(real, NAMESPACE, "siesta-gateway")
    # A small receive buffer: the gateway feels the slow reader within a few KB.
    slow_link = httpx2.HTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READER_BUFFER)]
    )
    slow_client = openai.OpenAI(
        base_url=f"{gateway}/v1", api_key="-", timeout=300, max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=slow_link),
    )  # fmt: skip
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="-", timeout=300, max_retries=0)

    with _explained(real), PodWatch(real) as watch:
        context = {"name": "SIESTA_CTX_SIZE", "value": str(STREAM_SLOTS * STREAM_SLOT_CONTEXT)}
        wait_for(
            "the StatefulSet to take the bigger context",
            lambda: context in _template(real)["env"],
            timeout=60,
        )
        reader = SlowReader(slow_client)
        wait_for(
            "the long stream's first chunks",
            lambda: reader.chunks > 1 or not reader.streaming,
            timeout=300,
        )
        assert reader.streaming, f"the stream ended early: {reader.error!r}"
        serving = _model_pod(real)
        assert serving is not None
        assert is_ready(serving)
        uid = serving["metadata"]["uid"]
        assert serving["spec"]["containers"][0]["image"] == built["SIESTA_SERVER_IMAGE"]

        started = time.monotonic()
        helm_on(
            real, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
            "--set", f"operator.serverImage={new_server}",
            "--set", f"operator.serverCudaImage={new_server}",
            "--wait", "--timeout=5m",
        )  # fmt: skip
        print(f"\nhelm upgrade to the new server image took {time.monotonic() - started:.0f}s")
        chunks_at_upgrade = reader.chunks
        wait_for(
            "the operator to render the new server image",
            lambda: _template(real)["image"] == new_server,
            timeout=120,
        )
        pending = wait_for(
            "UpToDate=False (UpdatePending)",
            lambda: (c := _condition(real, "UpToDate")).get("status") == "False" and c,
            timeout=120,
        )
        assert pending["reason"] == "UpdatePending", pending
        assert f"{MODEL}-0 on an older template: replaced when idle" in pending["message"]
        assert "in flight at the gateway" in pending["message"], pending
        md = real.get_json("modeldeployment", MODEL, "-n", MODELS)
        assert f"update pending: {MODEL}-0" in md["status"]["reason"], md["status"]

        def untouched() -> bool:
            pod = _model_pod(real)
            return (
                reader.streaming
                and pod is not None
                and pod["metadata"]["uid"] == uid
                and pod["spec"]["containers"][0]["image"] == built["SIESTA_SERVER_IMAGE"]
            )

        holds("the streaming pod keeps running", untouched, seconds=15)  # > the 10 s re-look
        assert reader.chunks > chunks_at_upgrade, "no chunk came while the control plane rolled"

        reader.hurry.set()
        reader.thread.join(timeout=STREAM_END_SECONDS)
        assert reader.ended_at is not None, (
            f"the stream did not end within {STREAM_END_SECONDS} s of hurrying ({reader.chunks} chunks)"
        )
        assert reader.error is None, repr(reader.error)
        assert reader.finish_reasons == dict.fromkeys(range(STREAM_CHOICES), "length")
        assert reader.completion_tokens == STREAM_CHOICES * STREAM_TOKENS
        print(f"the stream: {reader.chunks} chunks, {reader.completion_tokens} tokens")

        def replaced() -> dict[str, Any] | None:
            pod = _model_pod(real)
            return pod if pod and pod["metadata"]["uid"] != uid and is_ready(pod) else None

        new_pod = wait_for("a new, ready pod on the new template", replaced, timeout=240)
        # (Its containerStatuses may name the image by its first tag: both tags are one image.)
        assert new_pod["spec"]["containers"][0]["image"] == new_server
        deleted_at = watch.uid_terminating_since.get(uid)
        assert deleted_at is not None, "the old pod was never seen terminating"
        assert deleted_at > reader.ended_at, "the old pod was deleted before the stream ended"

        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi again"}], max_tokens=4
        )
        assert answer.choices[0].message.content
        answered_by = _model_pod(real)
        assert answered_by is not None
        assert answered_by["metadata"]["uid"] == new_pod["metadata"]["uid"]
        wait_for(
            "UpToDate=True",
            lambda: _condition(real, "UpToDate").get("status") == "True",
            timeout=60,
        )
        events = real.get_json(
            "events", "-n", MODELS, "--field-selector", f"involvedObject.name={MODEL}"
        )
        replacements = [e["message"] for e in events["items"] if e["reason"] == "PodReplaced"]
        assert replacements == [
            f"{MODEL}-0 ran an older template (idle: no request held or in flight): replaced"
        ]


def test_uninstall_leaves_nothing_behind(real: Cluster) -> None:
    # Models first, while the operator runs (it removes its finalizer), then the release.
    real.kubectl("delete", "modeldeployment", MODEL, "-n", MODELS, "--timeout=120s")
    helm_on(real, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=3m")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    kinds = "deployments,services,serviceaccounts,configmaps,roles,rolebindings"
    left = real.kubectl("get", kinds, "-A", "-l", selector, "-o", "name").stdout.split()
    left += real.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
    ).stdout.split()
    assert left == []
    wait_for(
        "the control plane's pods gone",
        lambda: real.get_json("pods", "-n", NAMESPACE)["items"] == [],
        timeout=120,
    )
    wait_for(
        "the model's StatefulSet and claims gone",
        lambda: real.get_json("statefulsets,pvc", "-n", MODELS)["items"] == [],
        timeout=120,
    )
