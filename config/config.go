// Package config loads and validates exporter.yml.
//
// Decoding is strict (unknown keys are errors) and every problem is
// reported with the YAML path and line it belongs to, so check-config can
// print all of them at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Defaults applied when a key is absent.
const (
	DefaultTimezone      = "Asia/Shanghai"
	DefaultWshotoBaseURL = "https://open.wshoto.com"
	DefaultTagBatchSize  = 100
	DefaultPageSize      = 100
	DefaultLookbackDays  = 7
	DefaultRateLimit     = 10.0
	DefaultWechatBaseURL = "https://api.weixin.qq.com"
	DefaultTokenMode     = "stable"
)

// DefaultRetain is the retain APIs a mini-program uses unless told.
var DefaultRetain = []string{"weekly"}

var (
	DefaultPollInterval = model.Duration(15 * time.Minute)
	DefaultTimeout      = model.Duration(30 * time.Second)
)

// Config is the whole exporter.yml.
type Config struct {
	Global            Global               `yaml:"global"`
	Wshoto            []*WshotoTarget      `yaml:"wshoto"`
	WechatMiniprogram []*MiniprogramTarget `yaml:"wechat_miniprogram"`
}

// Global holds settings shared by every target.
type Global struct {
	Timezone string `yaml:"timezone"`

	// Location is Timezone resolved; set by Load.
	Location *time.Location `yaml:"-"`
}

// Fetch holds the settings of how a target talks to its upstream; every
// source embeds it.
type Fetch struct {
	// PollInterval is the wait between calls while the expected data is not
	// published yet.
	PollInterval model.Duration `yaml:"poll_interval"`
	// Timeout bounds one upstream HTTP call.
	Timeout model.Duration `yaml:"timeout"`
	// RateLimit caps upstream calls per second for this target.
	RateLimit float64 `yaml:"rate_limit"`
	// HTTPClient carries proxy and TLS settings.
	HTTPClient commoncfg.HTTPClientConfig `yaml:"http_client"`
}

func defaultFetch() Fetch {
	return Fetch{
		PollInterval: DefaultPollInterval,
		Timeout:      DefaultTimeout,
		RateLimit:    DefaultRateLimit,
		HTTPClient:   commoncfg.DefaultHTTPClientConfig,
	}
}

// WshotoTarget is one wshoto (企微管家) corp.
type WshotoTarget struct {
	Name          string   `yaml:"name"`
	BaseURL       string   `yaml:"base_url"`
	AppID         string   `yaml:"appid"`
	AppSecret     Secret   `yaml:"app_secret"`
	AppSecretFile string   `yaml:"app_secret_file"`
	TagIDs        []string `yaml:"tag_ids"`
	// TagBatchSize is how many tag ids one request carries; the upstream
	// does not document its limit.
	TagBatchSize int `yaml:"tag_batch_size"`
	PageSize     int `yaml:"page_size"`
	// LookbackDays is how far back the first refresh looks for the newest
	// published day when yesterday is not published yet.
	LookbackDays int `yaml:"lookback_days"`
	Fetch        `yaml:",inline"`

	secret       *string // resolved; a pointer so that %+v prints no secret
	decodeErrors []string
}

// Secret returns app_secret, or the content of app_secret_file as read by
// the last Load.
func (t *WshotoTarget) Secret() string { return deref(t.secret) }

// UnmarshalYAML applies defaults; the v2-style signature keeps the decoder's
// strict KnownFields mode for the fields inside.
func (t *WshotoTarget) UnmarshalYAML(unmarshal func(any) error) error {
	*t = WshotoTarget{
		BaseURL:      DefaultWshotoBaseURL,
		TagBatchSize: DefaultTagBatchSize,
		PageSize:     DefaultPageSize,
		LookbackDays: DefaultLookbackDays,
		Fetch:        defaultFetch(),
	}
	type plain WshotoTarget
	return keepTypeErrors(unmarshal((*plain)(t)), &t.decodeErrors)
}

// MiniprogramTarget is one WeChat mini-program.
type MiniprogramTarget struct {
	Name       string `yaml:"name"`
	BaseURL    string `yaml:"base_url"`
	AppID      string `yaml:"appid"`
	AppSecret  Secret `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Token is stable (default), classic, or file.
	Token           string   `yaml:"token"`
	AccessTokenFile string   `yaml:"access_token_file"`
	Retain          []string `yaml:"retain"`
	Fetch           `yaml:",inline"`

	secret       *string // resolved; a pointer so that %+v prints no secret
	decodeErrors []string
}

// Secret returns secret, or the content of secret_file as read by the
// last Load; empty with token: file.
func (t *MiniprogramTarget) Secret() string { return deref(t.secret) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Secret is a secret written in the configuration file. However it is
// printed (any fmt verb, YAML, JSON), it shows as <secret>.
type Secret string

const secretMask = "<secret>"

func (Secret) String() string   { return secretMask }
func (Secret) GoString() string { return `"` + secretMask + `"` }

// MarshalYAML hides the value; an unset secret stays unset.
func (s Secret) MarshalYAML() (any, error) {
	if s == "" {
		return nil, nil
	}
	return secretMask, nil
}

// MarshalJSON hides the value.
func (s Secret) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte(`""`), nil
	}
	return []byte(`"` + secretMask + `"`), nil
}

// UnmarshalYAML applies defaults, as WshotoTarget's does.
func (t *MiniprogramTarget) UnmarshalYAML(unmarshal func(any) error) error {
	*t = MiniprogramTarget{
		BaseURL: DefaultWechatBaseURL,
		Token:   DefaultTokenMode,
		Retain:  slices.Clone(DefaultRetain),
		Fetch:   defaultFetch(),
	}
	type plain MiniprogramTarget
	return keepTypeErrors(unmarshal((*plain)(t)), &t.decodeErrors)
}

// keepTypeErrors stores type errors of a list element instead of returning
// them: yaml.v3 drops an element whose UnmarshalYAML fails, and the
// validation of the rest would then report it as missing.
func keepTypeErrors(err error, into *[]string) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		*into = te.Errors
		return nil
	}
	return err
}

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File string
	Line int    // 0 when unknown
	Path string // YAML path such as wshoto[0].tag_ids; empty for the whole file
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is the error Load returns for an invalid file.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: err.Error()}}
	}
	return Parse(path, data)
}

// Parse decodes and validates data; name is the file name used in problem
// reports, and relative *_file paths are resolved against its directory.
func Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{syntaxProblem(name, err)}
	}
	idx := indexNode(&root)

	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var typeProblems Problems
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Problems{syntaxProblem(name, err)}
		}
		// The rest of the file decoded: validate it too, so one run
		// reports every problem.
		for _, msg := range te.Errors {
			typeProblems = append(typeProblems, idx.typeProblem(name, msg))
		}
	}
	var decodeErrors [][]string
	for _, t := range cfg.Wshoto {
		if t != nil {
			decodeErrors = append(decodeErrors, t.decodeErrors)
		}
	}
	for _, t := range cfg.WechatMiniprogram {
		if t != nil {
			decodeErrors = append(decodeErrors, t.decodeErrors)
		}
	}
	for _, msgs := range decodeErrors {
		for _, msg := range msgs {
			typeProblems = append(typeProblems, idx.typeProblem(name, msg))
		}
	}

	v := validator{file: name, dir: filepath.Dir(name), idx: idx}
	v.validate(cfg)
	problems := typeProblems
	for _, p := range v.problems {
		if !slices.ContainsFunc(typeProblems, func(tp Problem) bool { return tp.Path == p.Path }) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, problems
	}
	return cfg, nil
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func syntaxProblem(file string, err error) Problem {
	msg := err.Error()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return Problem{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

var unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type`)

func (idx nodeIndex) typeProblem(file, msg string) Problem {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return Problem{File: file, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	if f := unknownFieldRE.FindStringSubmatch(rest); f != nil {
		return Problem{File: file, Line: line, Path: idx.keyAt(line, f[1]), Msg: "unknown key"}
	}
	return Problem{File: file, Line: line, Path: idx.valueAt(line), Msg: strings.TrimPrefix(rest, "yaml: ")}
}

// nodeIndex maps YAML paths to the lines where they stand.
type nodeIndex struct {
	lines map[string]int
}

func indexNode(root *yaml.Node) nodeIndex {
	idx := nodeIndex{lines: map[string]int{}}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				idx.lines[p] = k.Line
				walk(val, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				idx.lines[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return idx
}

// line returns the line of path, or of its nearest ancestor that has one.
func (idx nodeIndex) line(path string) int {
	for path != "" {
		if l, ok := idx.lines[path]; ok {
			return l
		}
		cut := max(strings.LastIndexAny(path, ".["), 0)
		path = path[:cut]
	}
	return 0
}

func (idx nodeIndex) keyAt(line int, key string) string {
	var best string
	for p, l := range idx.lines {
		if l == line && (p == key || strings.HasSuffix(p, "."+key)) && (best == "" || p < best) {
			best = p
		}
	}
	if best == "" {
		return key
	}
	return best
}

func (idx nodeIndex) valueAt(line int) string {
	var best string
	for p, l := range idx.lines {
		if l == line && len(p) > len(best) {
			best = p
		}
	}
	return best
}

type validator struct {
	file     string
	dir      string // relative *_file paths start here
	idx      nodeIndex
	problems Problems
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Line: v.idx.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) validate(c *Config) {
	if c.Global.Timezone == "" {
		c.Global.Timezone = DefaultTimezone
	}
	loc, err := time.LoadLocation(c.Global.Timezone)
	if err != nil {
		v.add("global.timezone", "unknown time zone %q", c.Global.Timezone)
	}
	c.Global.Location = loc

	if len(c.Wshoto) == 0 && len(c.WechatMiniprogram) == 0 {
		v.add("", "no targets: configure at least one entry under wshoto or wechat_miniprogram")
	}
	names := map[string]string{}
	for i, t := range c.Wshoto {
		p := fmt.Sprintf("wshoto[%d]", i)
		if t == nil {
			v.add(p, "empty target")
			continue
		}
		v.validateWshoto(p, t, names)
	}
	apps := map[string]string{}
	for i, t := range c.WechatMiniprogram {
		p := fmt.Sprintf("wechat_miniprogram[%d]", i)
		if t == nil {
			v.add(p, "empty target")
			continue
		}
		v.validateMiniprogram(p, t, apps)
	}
}

var retainKinds = []string{"daily", "weekly", "monthly"}

func (v *validator) validateMiniprogram(p string, t *MiniprogramTarget, names map[string]string) {
	v.identity(p, t.Name, t.BaseURL, t.AppID, names)
	switch t.Token {
	case "stable", "classic":
		sec := v.secret(p, "secret", string(t.AppSecret), t.SecretFile)
		t.secret, t.AppSecret = &sec, "" // kept only behind the pointer
		if t.AccessTokenFile != "" {
			v.add(p+".access_token_file", "only used with token: file")
		}
	case "file":
		if t.AccessTokenFile == "" {
			v.add(p+".access_token_file", "required with token: file")
		} else if !filepath.IsAbs(t.AccessTokenFile) {
			t.AccessTokenFile = filepath.Join(v.dir, t.AccessTokenFile)
		}
		if t.AppSecret != "" || t.SecretFile != "" {
			v.add(p+".token", "token: file uses access_token_file; remove secret and secret_file")
		}
	default:
		v.add(p+".token", "%q is not one of stable, classic, file", t.Token)
	}
	if len(t.Retain) == 0 {
		v.add(p+".retain", "list at least one of daily, weekly, monthly")
	}
	seen := map[string]bool{}
	for i, r := range t.Retain {
		rp := fmt.Sprintf("%s.retain[%d]", p, i)
		switch {
		case !slices.Contains(retainKinds, r):
			v.add(rp, "%q is not one of daily, weekly, monthly", r)
		case seen[r]:
			v.add(rp, "duplicate %q", r)
		}
		seen[r] = true
	}
	v.fetch(p, &t.Fetch)
}

// identity checks what every target has: a unique name, a base URL and
// an appid.
func (v *validator) identity(p, name, baseURL, appID string, names map[string]string) {
	if name == "" {
		v.add(p+".name", "required")
	} else {
		v.unique(p, name, names)
	}
	v.baseURL(p+".base_url", baseURL)
	if appID == "" {
		v.add(p+".appid", "required")
	}
}

func (v *validator) unique(p string, name string, seen map[string]string) {
	if first, dup := seen[name]; dup {
		v.add(p+".name", "duplicate name %q (first used at line %d)", name, v.idx.line(first))
		return
	}
	seen[name] = p + ".name"
}

func (v *validator) validateWshoto(p string, t *WshotoTarget, names map[string]string) {
	v.identity(p, t.Name, t.BaseURL, t.AppID, names)
	sec := v.secret(p, "app_secret", string(t.AppSecret), t.AppSecretFile)
	t.secret, t.AppSecret = &sec, "" // kept only behind the pointer
	if len(t.TagIDs) == 0 {
		v.add(p+".tag_ids", "required: list at least one tag id")
	}
	seen := map[string]bool{}
	for i, id := range t.TagIDs {
		tp := fmt.Sprintf("%s.tag_ids[%d]", p, i)
		switch {
		case strings.TrimSpace(id) == "":
			v.add(tp, "empty tag id")
		case seen[id]:
			v.add(tp, "duplicate tag id %q", id)
		}
		seen[id] = true
	}
	v.intRange(p+".tag_batch_size", t.TagBatchSize, 1, 1000)
	v.intRange(p+".page_size", t.PageSize, 1, 100)
	v.intRange(p+".lookback_days", t.LookbackDays, 1, 90)
	v.fetch(p, &t.Fetch)
}

// maxSecretFile bounds what a secret file may hold, so a path such as
// /dev/zero fails rather than filling memory.
const maxSecretFile = 64 << 10

func readSmallFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, withoutPath(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	switch {
	case err != nil:
		return nil, withoutPath(err)
	case len(b) > maxSecretFile:
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxSecretFile)
	}
	return b, nil
}

// withoutPath drops the path an *fs.PathError repeats; problems name it.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// secret resolves an inline secret or a secret file, exactly one of which
// must be set. Its value never enters a message.
func (v *validator) secret(p, key, inline, file string) string {
	switch {
	case inline != "" && file != "":
		v.add(p+"."+key+"_file", "set either %s or %s_file, not both", key, key)
	case inline != "":
		return inline
	case file != "":
		if !filepath.IsAbs(file) {
			file = filepath.Join(v.dir, file)
		}
		b, err := readSmallFile(file)
		if err != nil {
			v.add(p+"."+key+"_file", "cannot read secret file: %v", err)
			return ""
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			v.add(p+"."+key+"_file", "secret file %s is empty", file)
		}
		return s
	default:
		v.add(p, "one of %s or %s_file is required", key, key)
	}
	return ""
}

func (v *validator) baseURL(p, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(p, "%q is not an http(s) URL with a host", raw)
		return
	}
	if u.RawQuery != "" || u.User != nil {
		v.add(p, "must not carry a query or user info")
	}
}

func (v *validator) intRange(p string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(p, "%d is out of range [%d, %d]", n, lo, hi)
	}
}

func (v *validator) fetch(p string, f *Fetch) {
	if f.PollInterval < model.Duration(time.Minute) {
		v.add(p+".poll_interval", "%s is too short: at least 1m (upstream quotas are shared)", f.PollInterval)
	}
	if f.Timeout <= 0 {
		v.add(p+".timeout", "must be positive")
	}
	if f.RateLimit <= 0 || f.RateLimit > 1000 {
		v.add(p+".rate_limit", "%g is out of range (0, 1000] calls per second", f.RateLimit)
	}
	if err := f.HTTPClient.Validate(); err != nil {
		v.add(p+".http_client", "%v", err)
	}
}

// Summary describes the targets in one line, for logs and check-config.
func (c *Config) Summary() string {
	var corps, apps []string
	for _, t := range c.Wshoto {
		corps = append(corps, t.Name)
	}
	for _, t := range c.WechatMiniprogram {
		apps = append(apps, t.Name)
	}
	slices.Sort(corps)
	slices.Sort(apps)
	return fmt.Sprintf("%d wshoto target(s) %v, %d wechat_miniprogram target(s) %v, timezone %s",
		len(corps), corps, len(apps), apps, c.Global.Timezone)
}
