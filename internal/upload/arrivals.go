package upload

import (
	"slices"
	"sync"
)

// arrivals orders the requests that write the same chunk in place
// within this process: a later one hurries those still in flight, and a
// failed one that a later one overtook leaves the later one's receipt
// alone.
//
// Without it, an arrival's outcome was recorded after its write had
// ended, and another arrival of the chunk could write and be recorded
// in between. On local disk, where the store lets one write of a chunk
// run at a time, a client cut off halfway that sent the chunk again met
// this: the whole copy was acknowledged, and the cut one, recorded after
// it and counted as touching the copy, marked the acknowledged chunk
// FAILED. Its bytes lay under the later copy's, which stood whole.
//
// An arrival begins writing when the store first reads its body. localfs
// holds the chunk's lock by then and until the write ends, so arrivals
// begin writing in the order they write, and the one that began last
// wrote last. A whole arrival records RECEIVED even when overtaken: a
// copy of the same bytes written over it leaves them as they were, and
// one of other bytes is caught when the file is read back against each
// chunk's CRC32C (docs/DESIGN.md, Invariant 4).
//
// On GCS (Deps.WholeChunkWrites) none of this is used: a part is
// replaced only by an upload that completes, so every failed arrival
// leaves a RECEIVED chunk as it is. Replicas share nothing in process
// anyway.
type arrivals struct {
	mu     sync.Mutex
	chunks map[chunkKey]*chunkArrivals
}

type chunkKey struct {
	uploadID string
	index    int
}

// chunkArrivals are one chunk's arrivals in flight.
type chunkArrivals struct {
	// mu is held to begin a write and while an arrival records its
	// outcome, so no write begins between a record's check and its write.
	mu     sync.Mutex
	latest uint64 // the last arrival to begin writing; guarded by mu
	// inFlight are the arrivals not ended, oldest first; guarded by
	// arrivals.mu.
	inFlight []*arrival
}

// arrival is one request carrying a chunk, from its arrival at the
// service to its answer.
type arrival struct {
	set   *arrivals
	key   chunkKey
	chunk *chunkArrivals
	// hurry shortens the wait for the request's silent body
	// (ReceiveOptions.Hurry).
	hurry func()
	seq   uint64 // set when it begins writing; guarded by chunk.mu
}

// arrive registers a request for the chunk and hurries the requests for
// it still in flight: localfs writes one copy of a chunk at a time, so a
// client that sent the chunk again after its connection silently died
// waited for the dead request's body idle timeout (30 s) before its own
// could be written. tusd interrupts the older request outright; here a
// body still sending goes on, since two clients resuming one upload send
// the same chunks at once, and cutting either off failed its upload.
// end must follow.
func (a *arrivals) arrive(uploadID string, index int, hurry func()) *arrival {
	k := chunkKey{uploadID, index}
	a.mu.Lock()
	if a.chunks == nil {
		a.chunks = make(map[chunkKey]*chunkArrivals)
	}
	c := a.chunks[k]
	if c == nil {
		c = &chunkArrivals{}
		a.chunks[k] = c
	}
	var older []func()
	for _, r := range c.inFlight {
		if r.hurry != nil {
			older = append(older, r.hurry)
		}
	}
	r := &arrival{set: a, key: k, chunk: c, hurry: hurry}
	c.inFlight = append(c.inFlight, r)
	a.mu.Unlock()
	for _, hurry := range older {
		hurry()
	}
	return r
}

// begin marks the arrival's start of writing the chunk.
func (r *arrival) begin() {
	r.chunk.mu.Lock()
	defer r.chunk.mu.Unlock()
	r.chunk.latest++
	r.seq = r.chunk.latest
}

// settle runs record, telling it whether another arrival of the chunk
// began writing after this one did. No write begins while it runs. A nil
// arrival (a store that takes no turns) is never overtaken, nor is one
// that never began writing.
func (r *arrival) settle(record func(overtaken bool) error) error {
	if r == nil {
		return record(false)
	}
	r.chunk.mu.Lock()
	defer r.chunk.mu.Unlock()
	return record(r.seq != 0 && r.chunk.latest != r.seq)
}

// end ends the arrival; a nil one is nothing to end.
func (r *arrival) end() {
	if r == nil {
		return
	}
	r.set.mu.Lock()
	defer r.set.mu.Unlock()
	c := r.chunk
	c.inFlight = slices.DeleteFunc(c.inFlight, func(o *arrival) bool { return o == r })
	if len(c.inFlight) == 0 {
		delete(r.set.chunks, r.key)
	}
}
