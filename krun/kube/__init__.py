"""The Kubernetes half of discovery: where the API server is (`config`) and a lean client."""
