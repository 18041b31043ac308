"""Before kopf starts: what would the operator wait for? Say it at once, and avoid the waits.

kopf waits silently for a peering object that does not exist, for CRDs that are not
installed and for permissions it lacks. `check` asks the API server (discovery, one GET per
peering object, SelfSubjectAccessReviews for the permissions the operator uses) and
`plan_peering` decides: peer through the configured object when it exists, else run
standalone with a warning saying how to enable peering. The result is logged, and kept for
`/healthz` (a kopf probe in handlers.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from siesta.api.contract import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
CLUSTER_PEERING = "clusterkopfpeerings"
NAMESPACED_PEERING = "kopfpeerings"
PEERING_MANIFEST = "deploy/peering/kopf-peering.yaml"
RBAC_MANIFEST = "deploy/rbac/operator-rbac.yaml"
# (verb, API group, resource[/subresource]): what the operator's loops cannot work without.
REQUIRED_ACCESS: tuple[tuple[str, str, str], ...] = (
    ("watch", GROUP, PLURAL),
    ("patch", GROUP, f"{PLURAL}/status"),
    ("watch", "", "pods"),
    ("watch", "coordination.k8s.io", "leases"),
    ("create", "apps", "statefulsets"),
    ("patch", "apps", "statefulsets/scale"),
    ("create", "", "services"),
    ("create", "", "events"),
)


@dataclass(frozen=True)
class Found:
    """What the API server has (the inputs of `plan_peering`)."""

    model_crd: bool
    peering_crd: bool
    peering_objects: dict[str, bool] = field(default_factory=dict)
    """Namespace ("" for the ClusterKopfPeering) -> whether the peering object exists."""
    denied: tuple[str, ...] = ()
    """Permissions the operator lacks, as `verb resource in namespace`."""
    error: str = ""


@dataclass(frozen=True)
class Preflight:
    standalone: bool
    peering: str
    notes: tuple[str, ...]
    """What the operator waits for or works around, one line each (also on /healthz)."""
    warnings: tuple[str, ...] = ()

    def health(self) -> dict[str, object]:
        return {
            "peering": "standalone" if self.standalone else self.peering,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def plan_peering(peering: str, namespaces: tuple[str, ...], found: Found) -> Preflight:
    """Pure: from what exists, how to run and what to tell the user."""
    notes: list[str] = []
    warnings: list[str] = []
    if found.error:
        warnings.append(f"cannot check the cluster before starting: {found.error}")
    if not found.model_crd:
        warnings.append(
            f"the CRD {PLURAL}.{GROUP} ({VERSION}) is not installed: waiting for it "
            "(kubectl apply -f crds/)"
        )
    if found.denied:
        warnings.append(
            f"not allowed to {', '.join(found.denied)}: models cannot be served until the "
            f"RBAC allows it (kubectl apply -f {RBAC_MANIFEST}, or the chart's)"
        )
    if not peering:
        notes.append("standalone (peering disabled): run only one operator instance")
        return Preflight(True, "", tuple(notes), tuple(warnings))
    kind = "KopfPeering" if namespaces else "ClusterKopfPeering"
    if not found.peering_crd:
        warnings.append(
            f"no {kind} CRD in the cluster: running standalone (run only one instance); "
            f"to enable peering: kubectl apply -f {PEERING_MANIFEST}"
        )
        return Preflight(True, "", tuple(notes), tuple(warnings))
    missing = [ns or "(cluster)" for ns, exists in found.peering_objects.items() if not exists]
    if missing:
        warnings.append(
            f"{kind} {peering!r} not found in {', '.join(missing)}: running standalone "
            f"(run only one instance); create it with kubectl apply -f {PEERING_MANIFEST} "
            "or set SIESTA_PEERING"
        )
        return Preflight(True, "", tuple(notes), tuple(warnings))
    notes.append(f"peering through {kind} {peering!r}: one operator instance acts at a time")
    return Preflight(False, peering, tuple(notes), tuple(warnings))


def _served(api: client.ApiClient, group: str, version: str, plural: str) -> bool:
    try:
        resources = client.CustomObjectsApi(api).get_api_resources(group, version)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(r.name == plural for r in resources.resources or [])


def _exists(api: client.ApiClient, name: str, namespace: str) -> bool:
    objects = client.CustomObjectsApi(api)
    try:
        if namespace:
            objects.get_namespaced_custom_object(
                PEERING_GROUP, PEERING_VERSION, namespace, NAMESPACED_PEERING, name
            )
        else:
            objects.get_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, CLUSTER_PEERING, name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _denied(api: client.ApiClient, namespaces: tuple[str, ...]) -> tuple[str, ...]:
    authorization = client.AuthorizationV1Api(api)
    denied = []
    for namespace in namespaces or ("",):
        for verb, group, resource in REQUIRED_ACCESS:
            plural, _, subresource = resource.partition("/")
            review = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        namespace=namespace or None,
                        verb=verb,
                        group=group,
                        resource=plural,
                        subresource=subresource or None,
                    )
                )
            )
            answer = authorization.create_self_subject_access_review(review)
            if not (answer.status and answer.status.allowed):
                where = f" in {namespace}" if namespace else ""
                denied.append(f"{verb} {resource}{where}")
    return tuple(denied)


def check(api: client.ApiClient, peering: str, namespaces: tuple[str, ...]) -> Found:
    """Ask the API server what exists (discovery needs no RBAC beyond being authenticated)."""
    try:
        denied = _denied(api, namespaces)
        model_crd = _served(api, GROUP, VERSION, PLURAL)
        plural = NAMESPACED_PEERING if namespaces else CLUSTER_PEERING
        peering_crd = bool(peering) and _served(api, PEERING_GROUP, PEERING_VERSION, plural)
        objects = (
            {ns: _exists(api, peering, ns) for ns in (namespaces or ("",))} if peering_crd else {}
        )
    except (ApiException, OSError) as error:
        # Unknown: keep the configured peering (kopf will say more), and say so.
        text = str(getattr(error, "reason", "") or error).splitlines()[0][:200]
        return Found(True, True, dict.fromkeys(namespaces or ("",), True), error=text)
    return Found(model_crd, peering_crd, objects, denied)


def run_preflight(peering: str, namespaces: tuple[str, ...]) -> Preflight:
    """Check, decide and log (warnings at WARNING level, so they show at once)."""
    result = plan_peering(peering, namespaces, check(client.ApiClient(), peering, namespaces))
    for note in result.notes:
        logger.info("siesta operator: %s", note)
    for warning in result.warnings:
        logger.warning("siesta operator: %s", warning)
    return result
