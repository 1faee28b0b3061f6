"""The scenario harness: whole deployments on one machine, run end to end."""

import os

# The harness forks and execs children (namespaced processes, runsc) while the
# emulator's grpc.aio servers run in this process. gRPC's fork handlers exist
# for fork-without-exec; here they only log "skipping fork() handlers" on every
# spawn. Must be set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
