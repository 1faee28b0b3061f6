"""Discovery: where krun runs and which mesh it joins.

Pure rules beside thin clients:

* `metadata`  - the metadata server client and platform detection;
* `gke`       - the container API client and the cluster selection rules;
* `crm`       - Resource Manager (project number, labels);
* `naming`    - namespace, name, service account, trust domain (pure);
* `addresses` - XDS and CA addresses from settings and the mesh-env map (pure);
* `discover`  - the only module that sequences the calls, recording every decision.
"""
