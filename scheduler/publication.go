package scheduler

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// keepObservations is how many publications a target remembers: two
// weeks of daily data, enough to follow a drift without old outliers
// steering forever.
const keepObservations = 14

// minObservations is how many publications must be seen before polling
// follows them rather than starting as soon as data can exist.
const minObservations = 3

// Observation is one publication seen: Due is when the data could first
// exist (what the previous refresh said), LastMiss the last poll that did
// not find it (zero if the first did), FirstHit the refresh that found it.
// The publication happened in (LastMiss, FirstHit].
type Observation struct {
	Due      time.Time `json:"due"`
	LastMiss time.Time `json:"last_miss,omitzero"`
	FirstHit time.Time `json:"first_hit"`
}

// Publication learns when one target's upstream publishes, relative to
// when the data became due. Safe for concurrent use.
type Publication struct {
	mu    sync.Mutex
	obs   []Observation
	saved func() // persists the store, when it has a file
}

// Add records a publication.
func (p *Publication) Add(o Observation) {
	p.mu.Lock()
	p.obs = append(p.obs, o)
	if len(p.obs) > keepObservations {
		p.obs = slices.Clone(p.obs[len(p.obs)-keepObservations:])
	}
	save := p.saved
	p.mu.Unlock()
	if save != nil {
		save()
	}
}

// Observations returns a copy of what is remembered, oldest first.
func (p *Publication) Observations() []Observation {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.obs)
}

// StartOffset returns how long after data becomes due polling should
// start: one poll interval before the earliest publication remembered, so
// that the earliest seen is caught within an interval and an earlier one
// is found (and learned) too. It is false until enough has been seen.
func (p *Publication) StartOffset(poll time.Duration) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.obs) < minObservations {
		return 0, false
	}
	earliest := time.Duration(-1)
	for _, o := range p.obs {
		if d := o.FirstHit.Sub(o.Due); earliest < 0 || d < earliest {
			earliest = d
		}
	}
	return max(0, earliest-poll), true
}

// Store keeps every target's Publication, in memory and, when File is
// set, in a small JSON file that survives restarts.
type Store struct {
	File string

	mu   sync.Mutex
	pubs map[string]*Publication
}

// LoadStore reads file (a missing file is an empty store); "" keeps
// everything in memory. An unreadable file gives an error and an empty
// store that will overwrite it: what it held is only worth a few days of
// learning, not a refusal to start.
func LoadStore(file string) (*Store, error) {
	s := &Store{File: file, pubs: map[string]*Publication{}}
	if file == "" {
		return s, nil
	}
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	var saved map[string][]Observation
	if err := json.Unmarshal(b, &saved); err != nil {
		return s, &os.PathError{Op: "decode", Path: file, Err: err}
	}
	for k, obs := range saved {
		s.pubs[k] = &Publication{obs: obs, saved: s.save}
	}
	return s, nil
}

// For returns the Publication of a target, created on first use.
func (s *Store) For(key string) *Publication {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pubs == nil {
		s.pubs = map[string]*Publication{}
	}
	p := s.pubs[key]
	if p == nil {
		p = &Publication{}
		if s.File != "" {
			p.saved = s.save
		}
		s.pubs[key] = p
	}
	return p
}

// save writes the file atomically; a failure only costs the learning.
func (s *Store) save() {
	s.mu.Lock()
	out := make(map[string][]Observation, len(s.pubs))
	for k, p := range s.pubs {
		out[k] = p.Observations()
	}
	s.mu.Unlock()
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.File), ".state-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), s.File) != nil {
		_ = os.Remove(tmp.Name())
	}
}
