// The test bed's S3 server: gofakes3's S3 protocol over an in-memory backend, for Dagster's S3 compute log
// manager on the real node. It serves one bucket, created at start, and answers only requests signed with
// the access key id it was given (gofakes3 itself checks no credentials), so a pod without the Secret's
// credentials is refused. Every request is logged: method, path, status.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// signedBy: the SigV4 Authorization header names the key id as Credential=KEY/date/region/s3/aws4_request.
func signedBy(req *http.Request, key string) bool {
	return strings.Contains(req.Header.Get("Authorization"), "Credential="+key+"/")
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	bucket := flag.String("bucket", "", "the bucket to create at start")
	key := flag.String("access-key-id", "", "the only access key id accepted")
	flag.Parse()
	if *bucket == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "s3: -bucket and -access-key-id are required")
		os.Exit(2)
	}
	backend := s3mem.New()
	if err := backend.CreateBucket(*bucket); err != nil {
		log.Fatalf("s3: create bucket %s: %v", *bucket, err)
	}
	s3 := gofakes3.New(backend).Server()
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		if req.URL.Path == "/healthz" {
			rec.WriteHeader(http.StatusOK)
		} else if !signedBy(req, *key) {
			rec.Header().Set("Content-Type", "application/xml")
			rec.WriteHeader(http.StatusForbidden)
			fmt.Fprint(rec, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>`+
				`<Message>The access key id is not the one this server accepts.</Message></Error>`)
		} else {
			s3.ServeHTTP(rec, req)
		}
		log.Printf("%s %s %d", req.Method, req.URL.Path, rec.status)
	})
	log.Printf("s3: serving bucket %s on %s", *bucket, *addr)
	log.Fatal(http.ListenAndServe(*addr, handler))
}
