package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/predicate"
	"github.com/spoolhq/spool/ent/uploadbatch"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/ent/user"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/sqltx"
)

// Service runs uploads. It is safe for concurrent use, including by
// several processes sharing one database: every state change is a
// conditional update inside a transaction, never an in-process lock.
// (Requests writing the same chunk on local disk, which only one process
// uses, are also ordered in process: arrivals.go.)
type Service struct {
	db *ent.Client
	// dialect is the database's SQL dialect (ent's name), for the few
	// statements the chunk path builds itself (chunkrow.go).
	dialect string
	// chunkSQL is the chunk path's statements, built once (chunksql.go).
	chunkSQL *chunkStatements
	// receipts commits chunk receipts together on SQLite (groupcommit.go);
	// nil on PostgreSQL, where each request has a connection of its own.
	receipts *groupCommit
	store    Store
	// wholeChunkWrites is Deps.WholeChunkWrites.
	wholeChunkWrites bool
	broker           Broker
	signer           Signer
	cfg              Config
	log              *slog.Logger
	now              func() time.Time
	// direct is the store, when clients send chunks to it directly.
	direct DirectStore
	// resumable is the store, when clients send SINGLE uploads to its
	// resumable sessions (direct mode, on a store that has them).
	resumable ResumableStore
	// queue runs the work a change leaves to do (processing, purges).
	queue Queue
	// processor makes thumbnails and reads media facts; nil skips that
	// step (processing then only checks the bytes).
	processor Processor
	// slotWait is the longest ProcessMedia waits for a processing slot
	// (processingSlotWait; tests shorten it).
	slotWait time.Duration
	// outages rate-limits the log of database outages (NoteUnavailable).
	outages outageLog
	// arrivals orders the requests that write one chunk in place
	// (arrivals.go); unused when wholeChunkWrites.
	arrivals arrivals
}

// Deps are the engines a Service runs on.
type Deps struct {
	DB *ent.Client
	// Dialect is DB's SQL dialect: dialect.SQLite or dialect.Postgres.
	Dialect string
	Store   Store
	Broker  Broker
	Signer  Signer
	// Queue runs processing and purges as durable jobs (internal/jobs).
	Queue Queue
	// Processor derives thumbnails and facts from completed files
	// (internal/media); nil leaves files with only their bytes checked.
	Processor Processor
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it to expire things.
	Now func() time.Time
	// AsyncReceipts lets a chunk's receipt on PostgreSQL commit without
	// waiting for its WAL to reach the disk (synchronous_commit off for
	// that transaction alone), for when the chunk's own bytes are not
	// synced either: spool serve sets it unless --fsync-chunks. A crash of
	// PostgreSQL or the machine can then cost the receipts of the last
	// moments, which the client sends again, as a power loss can on
	// SQLite (docs/DESIGN.md, "Durability"). SQLite ignores it.
	AsyncReceipts bool
	// WholeChunkWrites says the store replaces a chunk only with a write
	// that succeeds whole: GCS finalises a part object only when its
	// upload completes, so an arrival that fails or ends early leaves an
	// earlier copy intact, and a RECEIVED chunk stays RECEIVED whatever
	// such an arrival did. On local disk a failed write, in place, may
	// have changed the copy, which then no longer counts. spool serve
	// sets it for GCS. Without it, a cut-off arrival recorded after a
	// whole one that overtook it marked that acknowledged chunk FAILED
	// (the fault suite's "client connection cut mid-chunk" met it).
	WholeChunkWrites bool
}

// NewService returns a Service with cfg's rules (zero fields take the
// defaults). It returns an error if cfg is invalid or an engine is missing.
func NewService(d Deps, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.DB == nil || d.Store == nil || d.Broker == nil || d.Signer == nil || d.Queue == nil {
		return nil, errors.New("upload: database, store, broker, signer and queue are all required")
	}
	if d.Dialect != dialect.SQLite && d.Dialect != dialect.Postgres {
		return nil, fmt.Errorf("upload: unsupported database dialect %q", d.Dialect)
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	clock := d.Now
	if clock == nil {
		clock = time.Now
	}
	s := &Service{
		db: d.DB, dialect: d.Dialect, chunkSQL: newChunkStatements(d.Dialect, d.AsyncReceipts && d.Dialect == dialect.Postgres), store: d.Store, broker: d.Broker, signer: d.Signer,
		cfg: cfg.withDefaults(), log: d.Logger, queue: d.Queue, processor: d.Processor,
		// To the microsecond, PostgreSQL's precision: an event built
		// from the times a statement wrote then says what a read of
		// them would.
		now:              func() time.Time { return clock().Round(time.Microsecond) },
		slotWait:         processingSlotWait,
		wholeChunkWrites: d.WholeChunkWrites,
	}
	if d.Dialect == dialect.SQLite {
		s.receipts = &groupCommit{db: d.DB}
	}
	if cfg.DirectUploads {
		ds, ok := d.Store.(DirectStore)
		if !ok {
			return nil, errors.New("upload: direct uploads need a store that signs its own URLs (GCS)")
		}
		s.direct = ds
		s.resumable, _ = d.Store.(ResumableStore)
	}
	return s, nil
}

// Config returns the rules the service runs with.
func (s *Service) Config() Config { return s.cfg }

// Close releases what the service holds. The service starts no work of
// its own: jobs run in the queue, whose owner starts and stops it.
func (s *Service) Close() {}

// EnsureUser returns the user for a token subject, creating it with the
// default quota on first sight.
func (s *Service) EnsureUser(ctx context.Context, subject string) (*ent.User, error) {
	u, err := s.db.User.Query().Where(user.Subject(subject)).Only(ctx)
	if err == nil {
		return u, nil
	}
	if !ent.IsNotFound(err) {
		return nil, fmt.Errorf("looking up user: %w", err)
	}
	err = s.db.User.Create().SetSubject(subject).SetQuotaBytes(s.cfg.DefaultQuota).
		OnConflictColumns(user.FieldSubject).Ignore().Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating user: %w", err)
	}
	return s.db.User.Query().Where(user.Subject(subject)).Only(ctx)
}

// Me returns the user with the given id.
func (s *Service) Me(ctx context.Context, userID string) (*ent.User, error) {
	u, err := s.db.User.Get(ctx, userID)
	if ent.IsNotFound(err) {
		return nil, errNotFound("user", userID)
	}
	return u, err
}

// plannedEachRun is ctx for the reads outside a transaction that
// PostgreSQL must plan at each run (database.PlannedEachRun): the
// sweep's, the orphan check's and the metrics' reads by status, the
// orphan check's pages of media files, the first read of a user's
// subscription and userMedia's pages. A generic plan made while a table
// was a page kept each of them walking all of its rows, or all of a
// user's, once the table grew (TestStatementsKeepTheirIndexes). None is
// on the chunk path; the housekeeping ones run a few times a minute, the
// others once a request, which their planning costs little beside.
func (s *Service) plannedEachRun(ctx context.Context) context.Context {
	if s.dialect != dialect.Postgres {
		return ctx
	}
	return sqltx.WithStatementOption(ctx, database.PlannedEachRun)
}

// withTx runs fn in a transaction, committing if it returns nil.
func (s *Service) withTx(ctx context.Context, fn func(tx *ent.Tx) error) error {
	return runTx(ctx, s.db, fn)
}

// activeStatuses are the states in which chunks may still arrive.
var activeStatuses = []Status{StatusInitialized, StatusUploading}

// ownedSession returns the caller's session (anyone's for an empty
// userID), or NOT_FOUND for a missing id and someone else's alike. It
// reads by primary key alone and compares the owner here: given the
// owner too, a planner may walk the owner's index through all their
// uploads (sessionWithChunk says when PostgreSQL did).
func ownedSession(ctx context.Context, c *ent.Client, userID, id string) (*ent.UploadSession, error) {
	sess, err := c.UploadSession.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && userID != "" && sess.OwnerID != userID) {
		return nil, errNotFound("upload", id)
	}
	if err != nil {
		return nil, fmt.Errorf("loading upload %s: %w", id, err)
	}
	return sess, nil
}

// chunksOf returns the chunk rows of a session, by index.
func chunksOf(ctx context.Context, c *ent.Client, sessionID string) ([]*ent.UploadChunk, error) {
	chunks, err := c.UploadChunk.Query().
		Where(uploadchunk.SessionID(sessionID)).
		Order(uploadchunk.ByIndex()).
		Select(uploadchunk.FieldIndex, uploadchunk.FieldState, uploadchunk.FieldSize).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading chunks of %s: %w", sessionID, err)
	}
	return chunks, nil
}

// chunkTotals summarises a session's chunk rows.
type chunkTotals struct {
	received      int
	receivedBytes int64
	failed        []int
}

func totalsOfRows(chunks []*ent.UploadChunk) chunkTotals {
	t := chunkTotals{failed: []int{}}
	for _, c := range chunks {
		switch c.State {
		case uploadchunk.StateRECEIVED:
			t.receivedBytes += c.Size
			t.received++
		case uploadchunk.StateFAILED:
			t.failed = append(t.failed, c.Index)
		}
	}
	return t
}

// failedIndexes lists a session's FAILED chunks, by index.
func failedIndexes(ctx context.Context, c *ent.Client, sessionID string) ([]int, error) {
	failed, err := c.UploadChunk.Query().
		Where(uploadchunk.SessionID(sessionID), uploadchunk.StateEQ(uploadchunk.StateFAILED)).
		Order(uploadchunk.ByIndex()).Select(uploadchunk.FieldIndex).Ints(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing failed chunks of %s: %w", sessionID, err)
	}
	return append([]int{}, failed...), nil
}

// progressOf derives what clients see from the session and its chunk rows
// (invariant 1: never from a counter).
func progressOf(sess *ent.UploadSession, t chunkTotals) Progress {
	p := Progress{
		UploadID: sess.ID, BatchID: sess.BatchID, OwnerID: sess.OwnerID,
		Status: sess.Status, TotalBytes: sess.TotalSize, TotalChunks: sess.TotalChunks,
		// A tus upload's tail is stored and counted in its offset, so it
		// counts as uploaded too (0 for any other upload).
		UploadedBytes: t.receivedBytes + sess.TailBytes, UploadedChunks: t.received, FailedChunks: t.failed,
		Version: sess.Version, At: sess.UpdatedAt, Error: sess.Error,
	}
	p.Percent = max(sess.Percent, percentOf(p.UploadedBytes, p.TotalBytes))
	if sess.Status == StatusCompleted {
		p.Percent = 100
	}
	return deduplicatedProgress(sess, p) // dedup.go
}

func percentOf(done, total int64) int {
	if total <= 0 {
		return 0
	}
	// Multiply first in 64 bits: sizes are at most a few TiB, so
	// done*100 cannot overflow.
	return int(done * 100 / total)
}

// session returns the caller's session with its progress (anyone's if
// userID is ""): sessions for one.
func (s *Service) session(ctx context.Context, c *ent.Client, userID, id string) (*Session, error) {
	sessions, err := s.sessions(ctx, c, userID, []string{id}, nil)
	if err != nil {
		return nil, err
	}
	return sessions[0], nil
}

// sessions is session for several uploads of one user (of anyone's if
// userID is ""), in the order of ids, in at most three statements however
// many there are: the sessions, their chunk rows, and the media files of
// those completed (a completed upload's media file is created in the
// transaction that completes it, so its progress names the file and its
// status until it is deleted). It returns NOT_FOUND if one of them does
// not exist or is not the user's. The uploads in made are the rows the
// caller inserted a moment ago, and no chunk of theirs can have arrived
// (no client knows their ids yet): they are not read, their chunk rows
// are not looked for, and when all are such, no statement is sent.
func (s *Service) sessions(ctx context.Context, c *ent.Client, userID string, ids []string, made map[string]*ent.UploadSession) ([]*Session, error) {
	var older []string // the uploads read here, whose chunks may have arrived
	for _, id := range ids {
		if made[id] == nil {
			older = append(older, id)
		}
	}
	var rows []*ent.UploadSession
	if len(older) > 0 {
		// By primary key alone, the owner checked below: given the owner
		// too, SQLite's planner walks the owner's index through all their
		// uploads, and PostgreSQL's may (sessionWithChunk).
		var err error
		if rows, err = c.UploadSession.Query().Where(uploadsession.IDIn(older...)).All(ctx); err != nil {
			return nil, fmt.Errorf("loading %d uploads: %w", len(older), err)
		}
	}
	byID := make(map[string]*ent.UploadSession, len(ids))
	for id, r := range made {
		byID[id] = r
	}
	var completed []string
	for _, r := range rows {
		if userID != "" && r.OwnerID != userID {
			continue // not found, as far as the caller can tell
		}
		byID[r.ID] = r
		if r.Status == StatusCompleted {
			completed = append(completed, r.ID)
		}
	}
	chunksBySession := make(map[string][]*ent.UploadChunk)
	if len(older) > 0 {
		chunks, err := c.UploadChunk.Query().
			Where(uploadchunk.SessionIDIn(older...)).
			Order(uploadchunk.BySessionID(), uploadchunk.ByIndex()).
			Select(uploadchunk.FieldSessionID, uploadchunk.FieldIndex, uploadchunk.FieldState, uploadchunk.FieldSize).
			All(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading the chunks of %d uploads: %w", len(older), err)
		}
		for _, ch := range chunks {
			chunksBySession[ch.SessionID] = append(chunksBySession[ch.SessionID], ch)
		}
	}
	mediaByUpload := make(map[string]*ent.MediaFile)
	if len(completed) > 0 {
		media, err := c.MediaFile.Query().
			Where(mediafile.UploadIDIn(completed...), mediafile.DeletedAtIsNil()).
			Select(mediafile.FieldID, mediafile.FieldStatus, mediafile.FieldUploadID).All(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading the media of %d uploads: %w", len(completed), err)
		}
		for _, m := range media {
			if m.UploadID != nil {
				mediaByUpload[*m.UploadID] = m
			}
		}
	}
	out := make([]*Session, len(ids))
	for i, id := range ids {
		r := byID[id]
		if r == nil {
			return nil, errNotFound("upload", id)
		}
		out[i] = newSession(r, chunksBySession[id], mediaByUpload[id])
	}
	return out, nil
}

// newSession is an upload with its progress, from its session, its chunk
// rows by index, and its media file (nil if it has none).
func newSession(sess *ent.UploadSession, chunks []*ent.UploadChunk, media *ent.MediaFile) *Session {
	p := progressOf(sess, totalsOfRows(chunks))
	if media != nil {
		p.MediaID, p.MediaStatus = &media.ID, &media.Status
	}
	return &Session{UploadSession: sess, Progress: p, missing: missingIndexes(sess.TotalChunks, chunks)}
}

// Session returns the caller's upload with its progress. It returns
// NOT_FOUND if the upload does not exist or is not the caller's.
func (s *Service) Session(ctx context.Context, userID, id string) (*Session, error) {
	sess, err := s.session(ctx, s.db, userID, id)
	if err != nil {
		return nil, err
	}
	return s.expireIfDue(ctx, sess), nil
}

// Batch returns the caller's batch with its uploads, or NOT_FOUND.
func (s *Service) Batch(ctx context.Context, userID, id string) (*Batch, error) {
	// By the batch's index alone, the owner compared here (ownedSession
	// says why). A batch's uploads are all its owner's.
	rows, err := s.db.UploadSession.Query().
		Where(uploadsession.BatchID(id)).
		Order(uploadsession.ByID()).
		Select(uploadsession.FieldID, uploadsession.FieldOwnerID).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading batch %s: %w", id, err)
	}
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		if r.OwnerID == userID {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		ok, err := s.db.UploadBatch.Query().
			Where(uploadbatch.ID(id), uploadbatch.OwnerID(userID)).Exist(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading batch %s: %w", id, err)
		}
		if !ok {
			return nil, errNotFound("batch", id)
		}
	}
	b := &Batch{ID: id}
	if len(ids) == 0 {
		return b, nil
	}
	if b.Uploads, err = s.sessions(ctx, s.db, userID, ids, nil); err != nil {
		return nil, err
	}
	for i, sess := range b.Uploads {
		b.Uploads[i] = s.expireIfDue(ctx, sess)
	}
	return b, nil
}

// Media returns the caller's media file, or NOT_FOUND (also once deleted).
func (s *Service) Media(ctx context.Context, userID, id string) (*ent.MediaFile, error) {
	// By primary key alone, the owner compared here (ownedSession says
	// why).
	m, err := s.db.MediaFile.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && (m.OwnerID != userID || m.DeletedAt != nil)) {
		return nil, errNotFound("media file", id)
	}
	if err != nil {
		return nil, fmt.Errorf("loading media %s: %w", id, err)
	}
	return m, nil
}

// ProgressMedia returns the caller's media file named by a progress
// event, or nil once it is deleted: an event may outlive its media.
func (s *Service) ProgressMedia(ctx context.Context, userID, id string) (*ent.MediaFile, error) {
	m, err := s.Media(ctx, userID, id)
	if ErrorCode(err) == CodeNotFound {
		return nil, nil
	}
	return m, err
}

// UploadMedia returns the media file an upload produced, or nil.
// It reads by the upload's id alone (unique) and compares the owner here,
// as ownedSession does.
func (s *Service) UploadMedia(ctx context.Context, userID, uploadID string) (*ent.MediaFile, error) {
	m, err := s.db.MediaFile.Query().
		Where(mediafile.UploadID(uploadID), mediafile.DeletedAtIsNil()).
		Only(ctx)
	if ent.IsNotFound(err) || (err == nil && m.OwnerID != userID) {
		return nil, nil
	}
	return m, err
}

// MediaQuery returns the query over the caller's visible media, for
// cursor pagination by the API layer.
func (s *Service) MediaQuery(userID string) *ent.MediaFileQuery {
	return s.db.MediaFile.Query().Where(mediafile.OwnerID(userID), mediafile.DeletedAtIsNil())
}

// MediaPage is one page of the caller's visible media (userMedia): the
// page MediaQuery's cursor pagination gives for after, first, before,
// last and opts. Its statements are planned at each run on PostgreSQL
// (plannedEachRun): a page's plan kept from a young table read all of a
// user's files and sorted them, for every page, where the (owner_id,
// created_at) index reads a page's worth (TestStatementsKeepTheirIndexes).
func (s *Service) MediaPage(ctx context.Context, userID string, after *entgql.Cursor[string], first *int,
	before *entgql.Cursor[string], last *int, opts ...ent.MediaFilePaginateOption) (*ent.MediaFileConnection, error) {
	return s.MediaQuery(userID).Paginate(s.plannedEachRun(ctx), after, first, before, last, opts...)
}

// MediaURL returns where a client downloads the media file's bytes:
// the store's own (signed or public) URL when it makes them and
// Config.ProxyMedia is off, else spool's signed download URL. It returns
// STORAGE_UNAVAILABLE if the store fails to make its URL.
func (s *Service) MediaURL(ctx context.Context, m *ent.MediaFile) (string, error) {
	if m.PublicURL != nil {
		return *m.PublicURL, nil
	}
	exp := s.now().Add(s.cfg.MediaURLTTL)
	if linker, ok := s.store.(ObjectLinker); ok && !s.cfg.ProxyMedia {
		u, err := linker.ObjectURL(ctx, m.StorageKey, m.FileName, exp)
		if err != nil {
			return "", storageError("signing a download URL", err)
		}
		return u, nil
	}
	return s.signer.MediaURL(m.ID, m.FileName, exp), nil
}

// Thumbnails returns the media file's thumbnails, smallest first, with
// URLs made as MediaURL makes the media's. It returns STORAGE_UNAVAILABLE
// if the store fails to sign one.
func (s *Service) Thumbnails(ctx context.Context, m *ent.MediaFile) ([]Thumbnail, error) {
	exp := s.now().Add(s.cfg.MediaURLTTL)
	linker, signs := s.store.(ObjectLinker)
	out := make([]Thumbnail, len(m.Thumbnails))
	for i, t := range m.Thumbnails {
		out[i].Thumbnail = t
		if signs && !s.cfg.ProxyMedia && m.PublicURL == nil {
			u, err := linker.ObjectURL(ctx, t.Key, thumbnailName(m, i), exp)
			if err != nil {
				return nil, storageError("signing a thumbnail URL", err)
			}
			out[i].URL = u
			continue
		}
		out[i].URL = s.signer.ThumbnailURL(m.ID, i, exp)
	}
	return out, nil
}

// thumbnailName is the file name a downloaded thumbnail is saved under.
func thumbnailName(m *ent.MediaFile, n int) string {
	t := m.Thumbnails[n]
	return fmt.Sprintf("%s-%dx%d%s", strings.TrimSuffix(m.FileName, path.Ext(m.FileName)), t.Width, t.Height, path.Ext(t.Key))
}

// reserveQuota adds n bytes, the size of a number of new uploads, to the
// user's reservation if it stays within the quota. The condition is part of the
// UPDATE, so concurrent reservations can never together exceed the quota
// (invariant 6).
func reserveQuota(ctx context.Context, tx *ent.Tx, userID string, n int64, uploads int) error {
	fits := predicate.User(func(s *entsql.Selector) {
		s.Where(entsql.P(func(b *entsql.Builder) {
			b.Ident(s.C(user.FieldReservedBytes)).WriteString(" + ").Arg(n).
				WriteString(" <= ").Ident(s.C(user.FieldQuotaBytes))
		}))
	})
	updated, err := tx.User.Update().Where(user.ID(userID), fits).AddReservedBytes(n).Save(ctx)
	if err != nil {
		return fmt.Errorf("reserving quota: %w", err)
	}
	if updated == 0 {
		u, err := tx.User.Get(ctx, userID)
		if err != nil {
			return fmt.Errorf("reading quota: %w", err)
		}
		what := "this upload needs"
		if uploads > 1 {
			what = fmt.Sprintf("these %d uploads need", uploads)
		}
		return Errorf(CodeQuotaExceeded, "%s %d bytes but only %d of your %d-byte quota are free",
			what, n, max(0, u.QuotaBytes-u.ReservedBytes), u.QuotaBytes)
	}
	return nil
}

// releaseQuota gives n bytes back to the user.
func releaseQuota(ctx context.Context, tx *ent.Tx, userID string, n int64) error {
	if err := tx.User.UpdateOneID(userID).AddReservedBytes(-n).Exec(ctx); err != nil {
		return fmt.Errorf("releasing quota: %w", err)
	}
	return nil
}

// publish sends the upload's current progress to subscribers. It runs
// after commit; a lost event is harmless because subscribers resync from
// the database.
func (s *Service) publish(ctx context.Context, p Progress) {
	if err := s.broker.Publish(context.WithoutCancel(ctx), p); err != nil {
		s.log.WarnContext(ctx, "progress publish failed", "upload_id", p.UploadID, "err", err)
	}
}

// publishCurrent reads an upload's progress and publishes it.
func (s *Service) publishCurrent(ctx context.Context, uploadID string) {
	sess, err := s.session(ctx, s.db, "", uploadID)
	if err != nil {
		s.log.WarnContext(ctx, "reading progress to publish failed", "upload_id", uploadID, "err", err)
		return
	}
	s.publish(ctx, sess.Progress)
}

// publishSession publishes the progress of sess, an upload's row as a
// statement of this call left it (updateSession), with media its media
// file (nil for none): the event publishCurrent would read once the
// change commits, without reading it. The counts are the row's, as a
// receipt's event has them.
func (s *Service) publishSession(ctx context.Context, sess *ent.UploadSession, media *ent.MediaFile) {
	p, err := countedProgress(ctx, s.db, sess)
	if err != nil {
		s.log.WarnContext(ctx, "reading progress to publish failed", "upload_id", sess.ID, "err", err)
		return
	}
	if media != nil && media.DeletedAt == nil {
		p.MediaID, p.MediaStatus = &media.ID, &media.Status
	}
	s.publish(ctx, p)
}

// missingIndexes lists the chunk indexes not received, in order.
func missingIndexes(total int, chunks []*ent.UploadChunk) []int {
	received := make([]bool, total)
	for _, c := range chunks {
		if c.State == uploadchunk.StateRECEIVED && c.Index < total {
			received[c.Index] = true
		}
	}
	var missing []int
	for i, ok := range received {
		if !ok {
			missing = append(missing, i)
		}
	}
	return missing
}

// describeIndexes shows at most a few indexes, for error messages.
func describeIndexes(idx []int) string {
	const show = 8
	if len(idx) <= show {
		return fmt.Sprint(idx)
	}
	return fmt.Sprintf("%v and %d more", slices.Clip(idx[:show]), len(idx)-show)
}

// UnfinishedStatuses are the statuses CountUnfinished counts: uploads
// still taking chunks, or being assembled.
var UnfinishedStatuses = []Status{StatusInitialized, StatusUploading, StatusAssembling}

// CountUnfinished returns how many uploads of all users are in each of
// UnfinishedStatuses (statuses with none are absent), for metrics. It is
// one GROUP BY over the (status, expires_at) index, so its cost follows
// the unfinished uploads, not the finished ones that pile up; planned at
// each run on PostgreSQL, so that it stays so. It returns the database's
// error.
func (s *Service) CountUnfinished(ctx context.Context) (map[Status]int64, error) {
	var rows []struct {
		Status Status `json:"status"`
		Count  int64  `json:"count"`
	}
	err := s.db.UploadSession.Query().
		Where(uploadsession.StatusIn(UnfinishedStatuses...)).
		GroupBy(uploadsession.FieldStatus).
		Aggregate(ent.Count()).
		Scan(s.plannedEachRun(ctx), &rows)
	if err != nil {
		return nil, fmt.Errorf("counting unfinished uploads: %w", err)
	}
	counts := make(map[Status]int64, len(rows))
	for _, r := range rows {
		counts[r.Status] = r.Count
	}
	return counts, nil
}
