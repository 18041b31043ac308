"""The full loop (kit/localworld/full_loop.py) on a process-kubelet node of this directory's own.

`loop` needs a `process_kubelet`; the one of tests/e2e is session-scoped and would run
beside this one for the rest of the session, so these tests get their own node and label.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from localworld.cluster import Cluster
from localworld.full_loop import gateway_access, loop, model_dir, start_process_kubelet  # noqa: F401
from localworld.operator_env import operator_access, operator_runner  # noqa: F401
from localworld.procs import Proc

NODE = "proc-gpu-clients"
NODE_INDEX = 17  # pod addresses 10.244.17.N
LABEL = {"siesta.test/kubelet": "clients"}


@pytest.fixture(scope="module")
def process_kubelet(
    cluster: Cluster,
    model_dir: Path,  # noqa: F811 - the fixture imported above
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    proc = start_process_kubelet(
        cluster, NODE, NODE_INDEX, LABEL, model_dir, tmp_path_factory.mktemp("kubelet")
    )
    yield proc
    proc.stop(grace=30)


@pytest.fixture
def node_label() -> dict[str, str]:
    """The nodeSelector that puts a model on this directory's process-kubelet node."""
    return LABEL
