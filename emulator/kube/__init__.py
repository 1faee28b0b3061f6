"""An emulated Kubernetes API server per GKE cluster of the world.

Modules, from the pure core outwards:

* `selectors.py`  label and field selectors (parse, render, match)
* `patch.py`      JSON merge patch, JSON patch, strategic merge patch
* `mergekeys.py`  the strategic-merge list keys of the built-in kinds
* `kinds.py`      the resource registry: built-in kinds and those CRDs add
* `rbac.py`       the RBAC authorizer and the bootstrap policy
* `status.py`     Status bodies and StatusError
* `admission.py`  per-kind defaulting and validation
* `store.py`      objects, resourceVersions, watch history, snapshots: the in-process API
* `authn.py`      admin, Google and service-account tokens -> users
* `cluster.py`    one cluster's API semantics below HTTP (`kube_cluster(world, cluster)`)
* `discovery.py`  /version, discovery (plain and aggregated), OpenAPI v3 index
* `apiserver.py`  the ASGI app: routing, authn/authz, handlers, watch streaming
* `kubeconfig.py` kubeconfig files, and publishing endpoints after binding
* `manifests.py`  installing manifest files (the Istio CRDs) into a cluster
"""
