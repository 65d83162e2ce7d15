// Command s runs the function the way func's Go scaffold does for an instanced function:
// func-go's service calls its Start with the environment, serves Handle on LISTEN_ADDRESS
// ([::]:8080 by default), answers /health/readiness and /health/liveness from Ready and
// Alive, and calls Stop on SIGTERM.
package main

import (
	"fmt"
	"os"

	"knative.dev/func-go/http"

	function "github.com/sre-kit/alert-rollback"
)

func main() {
	if err := http.Start(function.New()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
