package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// secretsIn lists which of secrets appear in text.
func secretsIn(text string, secrets []string) []string {
	var found []string
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			found = append(found, s)
		}
	}
	return found
}

// tokensOf returns every access token the fakes handed out or saw.
func tokensOf(calls []upstreamtest.Call) []string {
	var out []string
	for _, c := range calls {
		if c.Token != "" {
			out = append(out, c.Token)
		}
	}
	return out
}

// A full refresh of both sources at debug level, through faults that put
// URLs (with tokens and secrets in their queries) into errors, leaves no
// secret and no token in the log, /metrics, /status, the landing page or
// check-config's output.
func TestNoSecretAnywhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Until(shanghaiAt("2000-01-03 09:00")))
		r := newRig(t, func(r *rig) {
			r.wire.refused["wshoto.test"] = true // the token URL carries app_secret
			r.ws.Inject(wshoto.AnalyzePath, upstreamtest.Fault{Code: 40014, Msg: "access_token无效"}, upstreamtest.Fault{Status: 500},
				upstreamtest.Fault{Delay: time.Minute})
			r.mp.Inject(wechat.WeeklyPath, upstreamtest.Fault{Code: 40001, Msg: "invalid credential, access_token is invalid or not latest"},
				upstreamtest.Fault{Code: 40001}, upstreamtest.Fault{Body: "<html>bad gateway</html>"})
			r.mp.Inject(wechat.StableTokenPath, upstreamtest.Fault{Status: 502}, upstreamtest.Fault{Status: 502}, upstreamtest.Fault{Status: 502})
		})
		defer r.stop()
		time.Sleep(time.Minute)
		r.wire.set(func() { r.wire.refused = map[string]bool{} })
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		_, status := r.get(t, "/status")
		_, landing := r.get(t, "/")
		metrics := r.scrape(t)
		logs := r.logs.String()
		for _, want := range []string{`reason=network`, `reason=http_status`, `reason=invalid_response`, `reason=timeout`, `msg=refreshed`} {
			if !strings.Contains(logs, want) {
				t.Errorf("the scenario did not go through %s:\n%s", want, logs)
			}
		}
		if !strings.Contains(metrics, `wechat_retention_exporter_last_refresh_success{source="wshoto",target="acme"} 1`) ||
			!strings.Contains(metrics, `wechat_retention_exporter_last_refresh_success{source="wechat_miniprogram",target="shop"} 1`) {
			t.Errorf("no full refresh in the end:\n%s", lines(metrics, "wechat_retention_exporter_last_refresh_success{"))
		}
		secrets := append([]string{rigWshotoSecret, rigWechatSecret}, tokensOf(append(r.ws.Calls(), r.mp.Calls()...))...)
		if len(secrets) < 4 {
			t.Fatalf("the fakes saw no token: %v", secrets)
		}
		for name, text := range map[string]string{"log": logs, "/metrics": metrics, "/status": status, "/": landing} {
			if found := secretsIn(text, secrets); len(found) > 0 {
				t.Errorf("%s holds %q", name, found)
			}
		}
	})

	// check-config, on a valid and on an invalid file with inline secrets.
	dir := t.TempDir()
	for i, cfg := range []string{
		fmt.Sprintf(rigConfig, rigWshotoSecret, rigTagIDs(), rigWechatSecret),
		fmt.Sprintf(rigConfig, rigWshotoSecret, rigTagIDs(), rigWechatSecret) + "    secret_file: /nope\n    bogus: " + rigWechatSecret + "\n",
	} {
		file := filepath.Join(dir, fmt.Sprintf("c%d.yml", i))
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		code := checkConfig(file, &out)
		if found := secretsIn(out.String(), []string{rigWshotoSecret, rigWechatSecret}); len(found) > 0 || code != i {
			t.Errorf("check-config (exit %d) prints %q:\n%s", code, found, out.String())
		}
	}
}

// A goroutine dump (SIGQUIT, what a crash prints) of the binary in the
// middle of slow upstream calls holds neither secrets nor tokens.
func TestGoroutineDumpHoldsNoSecret(t *testing.T) {
	ws := wshototest.New("dump-appid", "dump-ws-secret-1")
	mp := wechattest.New("wxdumpdumpdumpdump", "dump-mp-secret-2")
	wsSrv, mpSrv := ws.Start(), mp.Start()
	t.Cleanup(wsSrv.Close) // after the exporter is killed
	t.Cleanup(mpSrv.Close)
	ws.Inject(wshoto.AnalyzePath, upstreamtest.Fault{Delay: 20 * time.Second})
	mp.Inject(wechat.WeeklyPath, upstreamtest.Fault{Delay: 20 * time.Second})
	cfg := filepath.Join(t.TempDir(), "exporter.yml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`wshoto:
  - {name: acme, base_url: %q, appid: dump-appid, app_secret: dump-ws-secret-1, tag_ids: [%s]}
wechat_miniprogram:
  - {name: shop, base_url: %q, appid: wxdumpdumpdumpdump, secret: dump-mp-secret-2, retain: [weekly]}
`, wsSrv.URL, wshototest.DemoTags[0].ID, mpSrv.URL)), 0o600)
	p := start(t, "--config.file="+cfg)
	deadline := time.Now().Add(10 * time.Second)
	// Calls are recorded when answered: once both tokens are, the slow
	// data calls are under way.
	for ws.CallCount(wshoto.TokenPath) == 0 || mp.CallCount(wechat.StableTokenPath) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the exporter never fetched its tokens")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	_ = p.cmd.Wait()
	dump := p.logs.String()
	if !strings.Contains(dump, "goroutine ") || !strings.Contains(dump, "SIGQUIT") {
		t.Fatalf("no goroutine dump:\n%.3000s", dump)
	}
	secrets := append([]string{"dump-ws-secret-1", "dump-mp-secret-2"}, tokensOf(append(ws.Calls(), mp.Calls()...))...)
	if found := secretsIn(dump, secrets); len(found) > 0 {
		t.Errorf("the dump holds %q", found)
	}
}

// writeTLS writes a self-signed certificate for 127.0.0.1 and its key.
func writeTLS(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wechat_retention_exporter test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// --web.config.file with TLS and basic auth, end to end: plain HTTP is
// refused, a request without or with wrong credentials gets 401, the
// right ones 200 on every page.
func TestTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeTLS(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	_ = os.WriteFile(webCfg, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n", certFile, keyFile, hash)), 0o600)
	p := start(t, "--demo", "--web.config.file="+webCfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	get := func(path, user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, "https://"+p.addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("/-/healthy", "prometheus", "scrape-pass") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the exporter did not come up with TLS")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, path := range []string{"/metrics", "/status", "/", "/-/ready"} {
		if code := get(path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, code)
		}
		if code := get(path, "prometheus", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d, want 401", path, code)
		}
		if code := get(path, "grafana", "scrape-pass"); code != http.StatusUnauthorized {
			t.Errorf("%s as an unknown user: %d, want 401", path, code)
		}
	}
	waitReady := time.Now().Add(10 * time.Second)
	for get("/-/ready", "prometheus", "scrape-pass") != http.StatusOK && time.Now().Before(waitReady) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, path := range []string{"/metrics", "/status", "/", "/-/ready"} {
		if code := get(path, "prometheus", "scrape-pass"); code != http.StatusOK {
			t.Errorf("%s with the right credentials: %d, want 200", path, code)
		}
	}
	if code, _ := p.get(t, "/metrics"); code == http.StatusOK {
		t.Error("plain HTTP answered 200 on a TLS listener")
	}
}
