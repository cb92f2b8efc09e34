"""A Pod Security Standards checker for the `restricted` profile (Kubernetes 1.25+; it has not changed since).

No cluster runs here, so no admission controller can tell us; this implements the checks of
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline and restricted) over a pod spec.
`violations(pod_spec)` returns what the admission controller would reject, as readable strings.
"""

from __future__ import annotations

from typing import Any

# Baseline.
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Restricted.
_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        out += [(f"{field}[{c.get('name', i)}]", c) for i, c in enumerate(spec.get(field) or [])]
    return out


def violations(spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> list[str]:
    """Every way this pod (spec and metadata) breaks Pod Security `restricted` (baseline included)."""
    bad: list[str] = []
    psc = spec.get("securityContext") or {}
    containers = _containers(spec)
    if not containers:
        bad.append("no containers")

    # --- baseline ---
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(f"{field} is true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("pod windowsOptions.hostProcess")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            bad.append(f"unsafe sysctl {sysctl.get('name')}")
    for where, sc in [("pod", psc)] + [(n, c.get("securityContext") or {}) for n, c in containers]:
        se = sc.get("seLinuxOptions") or {}
        if se.get("type") not in _SELINUX_TYPES or se.get("user") or se.get("role"):
            bad.append(f"{where}: seLinuxOptions {se}")
        aa = sc.get("appArmorProfile") or {}
        if aa.get("type") == "Unconfined":
            bad.append(f"{where}: appArmorProfile Unconfined")
    for key, value in ((metadata or {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and value == "unconfined":
            bad.append(f"AppArmor annotation {key}=unconfined")
    for name, c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{name}: windowsOptions.hostProcess")
        if sc.get("procMount") not in (None, "Default"):
            bad.append(f"{name}: procMount {sc.get('procMount')}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                bad.append(f"{name}: hostPort {port['hostPort']}")

    # --- restricted ---
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= _VOLUME_TYPES:
            bad.append(f"volume {vol.get('name')}: type {sorted(kinds - _VOLUME_TYPES)} not allowed")
    pod_non_root = psc.get("runAsNonRoot")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    if pod_seccomp is not None and pod_seccomp not in _SECCOMP_OK:
        bad.append(f"pod seccompProfile {pod_seccomp}")
    for name, c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            bad.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in _SECCOMP_OK:
            bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, not {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities must drop ALL")
        added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            bad.append(f"{name}: capabilities add {sorted(added)}")
    return bad


def pod_of(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(spec, metadata) of the pod in a Pod, a workload (Deployment, Job, ...) or a CronJob; None otherwise."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj["spec"], obj.get("metadata") or {}
    if kind == "CronJob":
        obj = obj["spec"]["jobTemplate"]
        kind = "Job"
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        template = obj["spec"]["template"]
        return template["spec"], template.get("metadata") or {}
    return None
