package kube

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// TestServes: the discovery document of the resource's group version decides; a group
// version the API server does not know (404) is not served; any other failure is an error.
func TestServes(t *testing.T) {
	applications := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	tests := []struct {
		name    string
		status  int
		body    string
		want    bool
		wantErr bool
	}{
		{name: "served", status: http.StatusOK,
			body: `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"argoproj.io/v1alpha1","resources":[{"name":"applications","namespaced":true,"kind":"Application","verbs":["get"]}]}`,
			want: true},
		{name: "the group version without the resource", status: http.StatusOK,
			body: `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"argoproj.io/v1alpha1","resources":[{"name":"appprojects","namespaced":true,"kind":"AppProject","verbs":["get"]}]}`},
		{name: "no such group version", status: http.StatusNotFound,
			body: `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}`},
		{name: "unavailable: an error", status: http.StatusServiceUnavailable,
			body: `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd","reason":"ServiceUnavailable","code":503}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.Path
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			d, err := NewDiscovery(&rest.Config{Host: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Serves(context.Background(), applications)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("Serves = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if path != "/apis/argoproj.io/v1alpha1" {
				t.Errorf("asked %s; want the group version's discovery document", path)
			}
		})
	}
}
