"""A GPU model whose server refuses to run on the CPU fails toward GPU off: the pod's
termination message (siesta-server --require-gpu's one line) becomes the Degraded reason of
`kubectl get md`, and the model then sleeps saying why. Pure: pod objects as a kubelet
writes them, fixed times."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from siesta.operator.observe import observe, pod_view
from siesta.operator.status import Situation, build_status
from siesta.policy import Memory, Observed, Signals, decide
from support.specs import make_spec, utc

NOW = utc("2026-11-25T09:00:00")
SPEC = make_spec(gpu={"count": 1, "products": ["Tesla-T4"]}, replicas={"min": 0, "max": 1})
# What the server wrote on a T4 node whose pod got no GPU (tests/server/test_server_gpu_*).
REFUSAL = (
    "GPU required (--require-gpu) but CUDA sees no GPU: NVIDIA_VISIBLE_DEVICES=<unset>, "
    "CUDA_VISIBLE_DEVICES=<unset>, NVIDIA driver 535.230.02; ggml_cuda_init: failed to "
    "initialize CUDA: CUDA driver version is insufficient for CUDA runtime version; "
    "CUDA 13 needs driver >= 580"
)


def crash_looping_pod() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "t4-0",
            "uid": "uid-t4-0",
            "creationTimestamp": "2026-11-25T08:59:00Z",
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "server",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "reason": "Error", "message": REFUSAL + "\n"}
                    },
                }
            ],
        },
    }


def test_refusal_is_the_degraded_reason_then_the_model_sleeps_saying_why() -> None:
    observed = observe(1, [pod_view(crash_looping_pod())])
    assert observed.failing == 1
    decision = decide(SPEC, observed, Signals(load=0.0), NOW, Memory(last_active_time=NOW))
    status = build_status(decision, Situation(observed=observed, generation=1), None, NOW)
    assert status["phase"] == "Degraded"
    assert status["reason"] == f"failing: t4-0: CrashLoopBackOff: {REFUSAL}"
    # No requests: at the idle timeout it goes to zero, saying the replica fails and why.
    later = NOW + timedelta(minutes=16)
    down = decide(SPEC, observed, Signals(load=0.0), later, Memory(last_active_time=NOW))
    assert down.desired == 0
    assert f"1 replica failing: t4-0: CrashLoopBackOff: {REFUSAL}" in down.reasons
    asleep = decide(SPEC, Observed(), Signals(load=0.0), later, Memory())
    slept = build_status(asleep, Situation(observed=Observed(), generation=1), status, later)
    assert slept["phase"] == "ScaledToZero"
    assert slept["reason"] == f"asleep after failing: t4-0: CrashLoopBackOff: {REFUSAL}"
