"""Fail toward GPU off: a model that cannot run ends asleep, and says why.

Real control plane, operator, gateway and siesta-server processes (process kubelet, which
reports termination messages, restart counts and CrashLoopBackOff like a kubelet).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from localworld.cluster import wait_for
from localworld.full_loop import Loop
from localworld.operator_env import condition, status
from localworld.prometheus_env import Prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.llama]

MISSING = "/models/does-not-exist.gguf"
SLEEPY = {"idle_timeout": "8s", "scale_down_delay": "1s"}


def ask(loop: Loop, alias: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{loop.gateway.url}/v1/chat/completions",
        json={"model": alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=timeout,
    )


def failure_events(loop: Loop, name: str) -> list[dict[str, Any]]:
    events = loop.cluster.get_json(
        "events", "-n", loop.namespace, "--field-selector", f"involvedObject.name={name}"
    )
    return [e for e in events.get("items", []) if e.get("type") == "Warning"]


def restarts(loop: Loop, name: str) -> int:
    return sum(
        int(c.get("restartCount") or 0)
        for pod in loop.pods(name)
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def test_a_crash_looping_model_says_why_and_goes_back_to_sleep(loop: Loop) -> None:
    loop.start_operator()
    loop.start_gateway("--retry-after", "7")
    alias = loop.add_model("broken", uri=f"file://{MISSING}", **SLEEPY)

    started = time.monotonic()
    response = ask(loop, alias)
    answered = time.monotonic() - started

    # The request is answered within seconds, with the server's own words.
    assert response.status_code == 503, response.text
    assert answered < 10, f"503 after {answered:.1f}s"
    assert response.headers["Retry-After"] == "7"
    error = response.json()["error"]
    assert error["code"] == "model_failing"
    # The kubelet maps /models to the test's model folder: the server names that path.
    assert "model file not found: " in error["message"]
    assert error["message"].endswith("/does-not-exist.gguf")

    degraded = status(loop.cluster, "broken", loop.namespace)
    assert degraded["phase"] == "Degraded", degraded
    assert degraded["reason"].startswith("failing: broken-0: ")
    assert "model file not found: " in degraded["reason"]
    assert degraded["reason"].endswith("/does-not-exist.gguf")
    serving = condition(loop.cluster, "broken", loop.namespace, "ModelServing")
    assert serving is not None
    assert serving["status"] == "False"
    assert serving["reason"] in ("CrashLoopBackOff", "Error")

    # Restarts go on, one Event says it (not one per restart).
    wait_for("two restarts", lambda: restarts(loop, "broken") >= 2, 60)
    events = failure_events(loop, "broken")
    assert len(events) == 1, events
    assert "model file not found: " in events[0]["message"]

    # Failing replicas do not hold the model up: asleep after its idle timeout, and why.
    wait_for("back to zero", lambda: loop.replicas("broken") == 0, 60)
    asleep_after = time.monotonic() - started
    wait_for("pod gone", lambda: loop.pods("broken") == [], 60)
    asleep = wait_for(
        "ScaledToZero",
        lambda: (
            (s := status(loop.cluster, "broken", loop.namespace))["phase"] == "ScaledToZero" and s
        ),
        30,
    )
    assert asleep["reason"].startswith("asleep after failing: broken-0: ")
    assert "model file not found: " in asleep["reason"]
    # idleTimeout 8s + scaleDownDelay 1s from the request, plus the operator's reaction.
    assert asleep_after < 30, f"asleep {asleep_after:.1f}s after the request"
    print(f"fault to asleep: {asleep_after:.1f}s; first answer after {answered:.1f}s")

    # It stops waking: status says when the next wake is allowed (1 minute after the first
    # failure ended), and until then a request gets 503 at once and wakes nothing.
    backoff = wait_for(
        "a wake backoff in status",
        lambda: status(loop.cluster, "broken", loop.namespace).get("wakeBackoff"),
        30,
    )
    assert backoff["failures"] == 1, backoff
    assert backoff["nextWakeAllowed"], backoff
    refused = ask(loop, alias, timeout=10)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "model_failing"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "woken again in" in refused.json()["error"]["message"]
    time.sleep(3)
    assert loop.replicas("broken") == 0, "a request woke a model in its backoff"

    # The annotation the docs name forgets the failures: the next request wakes it again.
    loop.cluster.kubectl(
        "annotate", "md", "broken", "-n", loop.namespace, "siesta.dev/wake-retry=1"
    )
    wait_for(
        "backoff forgotten",
        lambda: "wakeBackoff" not in status(loop.cluster, "broken", loop.namespace),
        30,
    )
    assert ask(loop, alias).json()["error"]["code"] == "model_failing"  # woken, fails again
    assert loop.replicas("broken") == 1


def test_a_model_that_recovers_is_served_again(loop: Loop, model_dir: Path) -> None:
    loop.start_operator()
    loop.start_gateway()
    alias = loop.add_model("late", uri="file:///models/late.gguf", idle_timeout="5m")
    target = model_dir / "late.gguf"
    target.unlink(missing_ok=True)

    first = ask(loop, alias)
    assert first.status_code == 503
    message = first.json()["error"]["message"]
    assert "model file not found: " in message
    assert message.endswith("/late.gguf")

    shutil.copy(model_dir / "tiny.gguf", target)  # the fault goes away
    try:
        # The next restart loads it: Ready, and the gateway serves it (no restarts of ours).
        wait_for(
            "Ready after the file appeared",
            lambda: status(loop.cluster, "late", loop.namespace).get("phase") == "Ready",
            60,
        )
        assert loop.chat(alias)
        serving = condition(loop.cluster, "late", loop.namespace, "ModelServing")
        assert serving is not None
        assert serving["status"] == "True"
    finally:
        target.unlink(missing_ok=True)


def test_metric_outage_falls_back_to_the_servers_own_load(
    loop: Loop, prometheus: Prometheus
) -> None:
    """Prometheus down: the model stays while its servers report work on their own /metrics,
    and still sleeps after idleTimeout once they report none, naming the source it used."""
    loop.operator_env.update(SIESTA_PROMETHEUS_URL=prometheus.url, SIESTA_METRIC_INTERVAL="1s")
    loop.start_operator()
    loop.start_gateway()
    alias = loop.add_model("outage", idle_timeout="10s", scale_down_delay="1s")
    assert loop.chat(alias)  # awake
    address = loop.pods("outage")[0]["status"]["podIP"]
    prometheus.stop()

    # Work the gateway does not see: two clients straight at the pod, back to back, for
    # 2.5 idle timeouts.
    stop = threading.Event()

    def work() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                client.post(
                    f"http://{address}:8080/v1/completions",
                    json={"prompt": "hello", "max_tokens": 64, "ignore_eos": True},
                )

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        fallback = wait_for(
            "MetricsAvailable: Prometheus down, load from the servers",
            lambda: (
                (c := condition(loop.cluster, "outage", loop.namespace, "MetricsAvailable"))
                and c["reason"] == "Fallback"
                and "cannot connect to Prometheus" in c["message"]
                and c
            ),
            30,
        )
        assert "from the servers" in fallback["message"]
        watching = time.monotonic()
        while time.monotonic() - watching < 25:
            assert loop.replicas("outage") == 1, "scaled down while its server was working"
            time.sleep(0.5)
        reasons = status(loop.cluster, "outage", loop.namespace)["reasons"]
        assert any("(from the servers)" in r for r in reasons), reasons
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)

    # No work any more, Prometheus still down: asleep after the idle timeout all the same.
    idle_from = time.monotonic()
    wait_for("asleep despite the outage", lambda: loop.replicas("outage") == 0, 60)
    print(f"idle to asleep with Prometheus down: {time.monotonic() - idle_from:.1f}s")
