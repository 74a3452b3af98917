package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
)

// Unary returns a CallFunc making one SayHello over client and reporting the answering pod.
func Unary(client echo.EchoServerClient) CallFunc {
	req := &echo.EchoRequest{Name: "load"}
	return func(ctx context.Context) (string, error) {
		r, err := client.SayHello(ctx, req)
		return r.GetPod(), err
	}
}

// codeByName maps gRPC code names ("Unavailable") back to codes.
var codeByName = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[c.String()] = c
	}
	return m
}()

// HTTPFrontend returns a CallFunc making one call through a Spread frontend mode URL
// (http://host:port/call/{mode}): GET url?n=1, and the pod from the JSON answer. A failed
// gRPC call keeps its status code; an HTTP error status is Unavailable (5xx) or
// InvalidArgument (4xx, e.g. an unknown mode), with the frontend's error message.
func HTTPFrontend(hc *http.Client, modeURL string) CallFunc {
	u := modeURL
	if strings.Contains(u, "?") {
		u += "&n=1"
	} else {
		u += "?n=1"
	}
	return func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return "", status.Error(codes.InvalidArgument, err.Error())
		}
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return "", status.FromContextError(ctx.Err()).Err()
			}
			return "", status.Errorf(codes.Unavailable, "frontend %s: %v", modeURL, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return "", status.Errorf(codes.Unavailable, "frontend %s: read: %v", modeURL, err)
		}
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Error string   `json:"error"`
				Modes []string `json:"modes"`
			}
			json.Unmarshal(body, &e)
			msg := fmt.Sprintf("frontend %s: %s: %s", modeURL, resp.Status, e.Error)
			if len(e.Modes) > 0 {
				msg += fmt.Sprintf(" (modes: %s)", strings.Join(e.Modes, ", "))
			}
			if resp.StatusCode >= 500 {
				return "", status.Error(codes.Unavailable, msg)
			}
			return "", status.Error(codes.InvalidArgument, msg)
		}
		var res struct { // the part of the frontend's answer (frontend.Result) a caller needs
			OK     int            `json:"ok"`
			Counts map[string]int `json:"counts"`
			Errors []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return "", status.Errorf(codes.Internal, "frontend %s: bad JSON: %v", modeURL, err)
		}
		if res.OK == 1 {
			for pod := range res.Counts {
				return pod, nil
			}
		}
		if len(res.Errors) > 0 {
			c, ok := codeByName[res.Errors[0].Code]
			if !ok {
				c = codes.Unknown
			}
			return "", status.Error(c, res.Errors[0].Message)
		}
		return "", status.Errorf(codes.Internal, "frontend %s: answer with neither a pod nor an error", modeURL)
	}
}

// ResumingStream returns a StreamFunc reading one long SayHelloStream (count messages,
// interval apart) over client, resumed across stream-age ends and breaks (echo.ReadStream).
func ResumingStream(client echo.EchoServerClient, count uint32, interval time.Duration) StreamFunc {
	return func(ctx context.Context, got func(pod string)) error {
		_, err := echo.ReadStream(ctx, client, &echo.EchoRequest{
			Name: "load stream", Count: count, IntervalMs: uint32(interval / time.Millisecond),
		}, func(r *echo.EchoReply) { got(r.GetPod()) })
		return err
	}
}
