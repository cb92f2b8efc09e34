"""tpt-operator: the Kubernetes executor of the planner in `tpt_stages.planner`.

`tpt run` drives the planner with local processes; this package drives the same planner with Kubernetes Jobs.
Pure core (`config`, `builders`, `observe`, `reconcile`, `crd`), thin edges (`kube`, `handlers`, `metrics`).
"""

GROUP = "tpt.dev"
VERSION = "v1alpha1"
PLURAL = "selfimprovementruns"
