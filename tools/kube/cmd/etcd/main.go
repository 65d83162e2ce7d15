// Command etcd is etcd 3.6's server, built from the module proxy at the version
// k8s.io/kubernetes v1.35.4 requires (the proxy has no installable etcd main).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
