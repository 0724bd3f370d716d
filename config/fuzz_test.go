package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to the loader: it must never panic, must
// answer either a configuration or Problems naming the file, and what it
// accepts must be runnable (names, positive intervals, a location). Seeds:
// testdata/fuzz/FuzzParse plus every file in testdata.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir() // relative *_file paths resolve here, never in the tree
	f.Fuzz(func(t *testing.T, data []byte) {
		name := filepath.Join(dir, "fuzz.yml")
		cfg, err := Parse(name, data)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			for _, p := range ps {
				if p.File != name || p.Msg == "" || !strings.HasPrefix(p.String(), name) {
					t.Fatalf("problem does not name the file: %+v", p)
				}
			}
			return
		}
		if cfg.Global.Location == nil {
			t.Fatal("accepted without a location")
		}
		for _, w := range cfg.Wshoto {
			if w.Name == "" || w.Secret() == "" || w.PollInterval <= 0 || w.Timeout <= 0 || w.RateLimit <= 0 {
				t.Fatalf("accepted an unrunnable wshoto target: %+v", w)
			}
		}
		for _, m := range cfg.WechatMiniprogram {
			if m.Name == "" || m.PollInterval <= 0 || m.Timeout <= 0 || m.RateLimit <= 0 {
				t.Fatalf("accepted an unrunnable mini-program target: %+v", m)
			}
		}
	})
}
