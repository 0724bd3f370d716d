package upstreamtest

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Fault is a scripted misbehaviour of a fake for one call. The zero Fault
// answers normally, so a queue can let some calls through.
type Fault struct {
	Status int           // HTTP status to answer with (with Body: the status of Body)
	Code   int           // a non-zero API error code, sent with Msg in the API's own shape
	Msg    string        //
	Body   string        // a raw body, sent as is
	Delay  time.Duration // wait before answering (ends early if the caller gives up)
}

// Call is one request a fake received.
type Call struct {
	At     time.Time
	Path   string
	Token  string // the access_token query parameter
	Body   string
	Answer int // the API code answered (0: success), or -status for HTTP-level answers
}

// Recorder keeps a fake's call log and fault queues; safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	faults map[string][]Fault
	down   map[string]Fault // played on every call until Heal
	calls  []Call
	// Chaos, when set, picks a fault for each call no queued or standing
	// fault answers (the zero Fault lets it through).
	Chaos func(path string) Fault
}

// Break makes every call to path play f until Heal: an outage rather than
// a burst.
func (r *Recorder) Break(path string, f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down == nil {
		r.down = map[string]Fault{}
	}
	r.down[path] = f
}

// Heal ends every outage and drops queued faults.
func (r *Recorder) Heal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down, r.faults = nil, nil
}

// Inject queues faults for the next calls to path.
func (r *Recorder) Inject(path string, faults ...Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.faults == nil {
		r.faults = map[string][]Fault{}
	}
	r.faults[path] = append(r.faults[path], faults...)
}

// Calls returns the requests received so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// CallCount counts the requests to path.
func (r *Recorder) CallCount(path string) int {
	n := 0
	for _, c := range r.Calls() {
		if c.Path == path {
			n++
		}
	}
	return n
}

// ResetCalls forgets the calls received so far.
func (r *Recorder) ResetCalls() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// Record logs c with its answer.
func (r *Recorder) Record(c Call, answer int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.Answer = answer
	r.calls = append(r.calls, c)
}

// Begin reads the request and plays the next queued fault for its path.
// It returns the call and true when the fault answered; apiError writes
// an API error in the fake's own shape (and records it).
func (r *Recorder) Begin(w http.ResponseWriter, req *http.Request, apiError func(http.ResponseWriter, Call, int, string)) (Call, bool) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	c := Call{At: time.Now(), Path: req.URL.Path, Token: req.URL.Query().Get("access_token"), Body: string(body)}
	r.mu.Lock()
	q := r.faults[req.URL.Path]
	f, broken := r.down[req.URL.Path]
	switch {
	case broken:
	case len(q) > 0:
		f, r.faults[req.URL.Path] = q[0], q[1:]
	case r.Chaos != nil:
		f = r.Chaos(req.URL.Path)
	}
	r.mu.Unlock()
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-req.Context().Done():
			r.Record(c, -499)
			return c, true
		}
	}
	switch {
	case f.Body != "":
		r.Record(c, -max(f.Status, 200))
		if f.Status != 0 {
			w.WriteHeader(f.Status)
		}
		_, _ = w.Write([]byte(f.Body))
	case f.Status != 0:
		r.Record(c, -f.Status)
		http.Error(w, http.StatusText(f.Status), f.Status)
	case f.Code != 0:
		apiError(w, c, f.Code, f.Msg)
	default:
		return c, false
	}
	return c, true
}
