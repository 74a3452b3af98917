package grpcroute

import (
	"bytes"
	"fmt"
	"os"
	"regexp"

	k8stypes "k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// ParseRoutes reads GRPCRoutes from YAML (documents separated by "---"), strictly: an
// unknown field or another kind is an error. Routes without a namespace get namespace.
func ParseRoutes(data []byte, namespace string) ([]*gatewayv1.GRPCRoute, error) {
	var out []*gatewayv1.GRPCRoute
	for i, doc := range docSep.Split(string(data), -1) {
		if len(bytes.TrimSpace([]byte(doc))) == 0 {
			continue
		}
		rt := &gatewayv1.GRPCRoute{}
		if err := yaml.UnmarshalStrict([]byte(doc), rt); err != nil {
			return nil, fmt.Errorf("grpcroute: document %d: %w", i, err)
		}
		if rt.APIVersion != gatewayv1.GroupVersion.String() || rt.Kind != "GRPCRoute" {
			return nil, fmt.Errorf("grpcroute: document %d: %s %s, want %s GRPCRoute", i, rt.APIVersion, rt.Kind, gatewayv1.GroupVersion)
		}
		if rt.Name == "" {
			return nil, fmt.Errorf("grpcroute: document %d: no metadata.name", i)
		}
		if rt.Namespace == "" {
			rt.Namespace = namespace
		}
		if rt.UID == "" {
			rt.UID = k8stypes.UID("file/" + rt.Namespace + "/" + rt.Name)
		}
		rt.Generation = max(rt.Generation, 1)
		out = append(out, rt)
	}
	return out, nil
}

// ReadRoutes is ParseRoutes of a file.
func ReadRoutes(path, namespace string) ([]*gatewayv1.GRPCRoute, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("grpcroute: %w", err)
	}
	return ParseRoutes(b, namespace)
}
