// Command pause is the process every pod sandbox holds, as Kubernetes' own pause image
// does: it keeps the pod's namespaces alive and exits on SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
