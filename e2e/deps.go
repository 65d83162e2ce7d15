package e2e
import (
	_ "knative.dev/serving/pkg/apis/serving/v1"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "sigs.k8s.io/yaml"
	_ "k8s.io/client-go/kubernetes"
)
