// The test bed's OpenID Connect provider: mockoidc (oauth2-proxy's own OIDC test provider: discovery, an
// authorization endpoint that signs in its default user at once, token, userinfo and JWKS endpoints, RS256
// ID tokens) on a fixed address, with the client id and secret it is given, for the sign-in tests of
// spec.auth on the real node. Every request is logged: method, path, status.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/oauth2-proxy/mockoidc"
)

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address")
	clientID := flag.String("client-id", "", "the only client id accepted")
	clientSecret := flag.String("client-secret", "", "that client's secret")
	flag.Parse()
	if *clientID == "" || *clientSecret == "" {
		fmt.Fprintln(os.Stderr, "oidc: -client-id and -client-secret are required")
		os.Exit(2)
	}
	provider, err := mockoidc.NewServer(nil)
	if err != nil {
		log.Fatalf("oidc: %v", err)
	}
	provider.ClientID, provider.ClientSecret = *clientID, *clientSecret
	err = provider.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			rec := &recorder{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(rec, req)
			log.Printf("%s %s %d", req.Method, req.URL.Path, rec.status)
		})
	})
	if err != nil {
		log.Fatalf("oidc: %v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("oidc: listen on %s: %v", *addr, err)
	}
	if err := provider.Start(ln, nil); err != nil {
		log.Fatalf("oidc: %v", err)
	}
	log.Printf("issuer %s", provider.Issuer())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	_ = provider.Shutdown()
}
