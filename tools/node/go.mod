// Module node builds what the local node runs besides Kubernetes itself: the OCI images
// (with go-containerregistry, the library behind ko and crane; no Docker, no registry), the
// pause program every pod sandbox holds, and a tiny app for the workloads the tests roll back.
module rollback.local/tools/node

go 1.26

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
