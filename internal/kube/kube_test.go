package kube

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// The client asks for protocol buffers and decodes them; a patch still goes as the patch
// type it is. A server answering JSON (a proxy that cannot speak protobuf, say) still works.
func TestWireFormat(t *testing.T) {
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "7"},
	}
	tests := []struct {
		name   string
		answer string // the content type the server answers with
	}{
		{name: "protobuf", answer: runtime.ContentTypeProtobuf},
		{name: "JSON", answer: runtime.ContentTypeJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var accepts, patchTypes []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				accepts = append(accepts, r.Header.Get("Accept"))
				if r.Method == http.MethodPatch {
					patchTypes = append(patchTypes, r.Header.Get("Content-Type"))
				}
				info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), tt.answer)
				if !ok {
					t.Errorf("no serializer for %s", tt.answer)
					return
				}
				var buf bytes.Buffer
				if err := codecs.EncoderForVersion(info.Serializer, appsv1.SchemeGroupVersion).Encode(dep, &buf); err != nil {
					t.Error(err)
				}
				w.Header().Set("Content-Type", tt.answer)
				w.Write(buf.Bytes())
			}))
			defer srv.Close()
			c, err := New(&rest.Config{Host: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Deployments("shop").Get(context.Background(), "web", metav1.GetOptions{})
			if err != nil || got.Name != "web" || got.ResourceVersion != "7" {
				t.Fatalf("Get = %v, %v; want shop/web at 7", got, err)
			}
			if _, err := c.Deployments("shop").Patch(context.Background(), "web", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, a := range accepts {
				if !strings.HasPrefix(a, runtime.ContentTypeProtobuf) {
					t.Errorf("Accept = %q; want protobuf first", a)
				}
			}
			if len(patchTypes) != 1 || patchTypes[0] != string(types.MergePatchType) {
				t.Errorf("patch Content-Type = %v; want %s", patchTypes, types.MergePatchType)
			}
		})
	}
}
