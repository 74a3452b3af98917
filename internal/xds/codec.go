package xds

import (
	"sync/atomic"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec sharedCodec falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// ServerOptions returns the options the gRPC server that serves s's ADS (Register) should be
// created with: a codec that sends every stream's DiscoveryResponse over the resource bytes
// the snapshot cache marshaled once, instead of marshaling the whole response again per
// stream. Without it ADS works the same, using one copy of each response per stream in flight
// (2,000 streams of a 5,000-endpoint assignment: about 2,000 × 230 KiB).
//
// The codec applies to every service of that gRPC server; messages other than a plain
// DiscoveryResponse go through grpc-go's proto codec unchanged.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(s.codec)}
}

// sharedCodec is the ADS server's gRPC codec. A DiscoveryResponse that carries only
// version_info, resources, type_url and nonce (what the sotw server sends) is encoded as a
// mem.BufferSlice of small framing pieces (field tags and lengths, version, type URL, nonce:
// one allocation per response) around each resource's Any.Value, referenced, not copied. The
// Anys are the cache's, marshaled once per resource version and never modified (cache.go), so
// every stream's response shares them read-only.
//
// Reference counting: the shared pieces are mem.SliceBuffers, whose Ref and Free are no-ops,
// so grpc-go never returns them to a buffer pool; the garbage collector frees them when the
// last response still being written lets go. Every other message is encoded by grpc-go's
// proto codec (pooled buffers, freed by grpc-go as usual).
type sharedCodec struct {
	fallback encoding.CodecV2
	shared   atomic.Int64 // responses encoded over shared resource bytes (for tests)
}

func newSharedCodec() *sharedCodec {
	return &sharedCodec{fallback: encoding.GetCodecV2("proto")}
}

// Name is the proto codec's: the content subtype does not change.
func (c *sharedCodec) Name() string { return "proto" }

func (c *sharedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.fallback.Unmarshal(data, v)
}

func (c *sharedCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*discoveryv3.DiscoveryResponse)
	if !ok || !plainResponse(r) {
		return c.fallback.Marshal(v)
	}
	c.shared.Add(1)
	return encodeShared(r), nil
}

// Field numbers of DiscoveryResponse and Any that encodeShared writes.
const (
	respVersionInfo protowire.Number = 1
	respResources   protowire.Number = 2
	respTypeURL     protowire.Number = 4
	respNonce       protowire.Number = 5
	anyTypeURL      protowire.Number = 1
	anyValue        protowire.Number = 2
)

// plainResponse reports whether r has no fields but those encodeShared writes (and no
// unknown fields), and each resource is a non-nil Any without unknown fields.
func plainResponse(r *discoveryv3.DiscoveryResponse) bool {
	if r == nil {
		return false
	}
	m := r.ProtoReflect()
	if len(m.GetUnknown()) > 0 {
		return false
	}
	plain := true
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		switch fd.Number() {
		case respVersionInfo, respResources, respTypeURL, respNonce:
		default:
			plain = false
		}
		return plain
	})
	if !plain {
		return false
	}
	for _, a := range r.GetResources() {
		if a == nil || len(a.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
	}
	return true
}

// encodeShared encodes a plain DiscoveryResponse (plainResponse) in field-number order, as
// proto.Marshal does: version_info, resources (each an Any: type_url, value), type_url,
// nonce. Only the Any values are large; they are referenced, everything else is written into
// one small buffer.
func encodeShared(r *discoveryv3.DiscoveryResponse) mem.BufferSlice {
	stringField := func(n protowire.Number, s string) int {
		if s == "" {
			return 0
		}
		return protowire.SizeTag(n) + protowire.SizeBytes(len(s))
	}
	anySize := func(a *anypb.Any) int {
		n := stringField(anyTypeURL, a.GetTypeUrl())
		if len(a.GetValue()) > 0 {
			n += protowire.SizeTag(anyValue) + protowire.SizeBytes(len(a.GetValue()))
		}
		return n
	}
	// The small buffer: everything but the values.
	size := stringField(respVersionInfo, r.GetVersionInfo()) + stringField(respTypeURL, r.GetTypeUrl()) + stringField(respNonce, r.GetNonce())
	for _, a := range r.GetResources() {
		n := anySize(a)
		size += protowire.SizeTag(respResources) + protowire.SizeVarint(uint64(n)) + n - len(a.GetValue())
	}
	small := make([]byte, 0, size)
	out := make(mem.BufferSlice, 0, 2*len(r.GetResources())+1)
	start := 0 // of the small piece not yet in out
	flush := func() {
		if len(small) > start {
			out = append(out, mem.SliceBuffer(small[start:len(small):len(small)]))
			start = len(small)
		}
	}
	appendString := func(n protowire.Number, s string) {
		if s != "" {
			small = protowire.AppendTag(small, n, protowire.BytesType)
			small = protowire.AppendString(small, s)
		}
	}
	appendString(respVersionInfo, r.GetVersionInfo())
	for _, a := range r.GetResources() {
		small = protowire.AppendTag(small, respResources, protowire.BytesType)
		small = protowire.AppendVarint(small, uint64(anySize(a)))
		appendString(anyTypeURL, a.GetTypeUrl())
		if v := a.GetValue(); len(v) > 0 {
			small = protowire.AppendTag(small, anyValue, protowire.BytesType)
			small = protowire.AppendVarint(small, uint64(len(v)))
			flush()
			out = append(out, mem.SliceBuffer(v[:len(v):len(v)]))
		}
	}
	appendString(respTypeURL, r.GetTypeUrl())
	appendString(respNonce, r.GetNonce())
	flush()
	return out
}
