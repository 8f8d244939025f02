package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/gcpace"
	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/redisurl"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

// defaultGCHeadroom is --gc-headroom's default: 16 MiB of heap beyond
// what is live cuts 6–18% of the CPU of a small request, and costs less
// than 16 MiB more memory than GOGC=100, none with a heap larger than it
// (docs/BENCHMARKS.md, "The collector paced by headroom"); a heap larger
// than twice it grows by half of itself (internal/gcpace).
const defaultGCHeadroom = 16 << 20

// envPrefix prefixes the environment variable of every flag:
// --chunk-size is SPOOL_CHUNK_SIZE.
const envPrefix = "SPOOL_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args into fs after seeding every flag from its
// environment variable, so a flag on the command line wins. A bad value
// in either names the flag or variable.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return fs.Parse(args)
}

// byteSize is a flag value for sizes: a number of bytes with an optional
// KiB, MiB, GiB or TiB suffix (KB… are taken as the same powers of two).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		shift  uint
	}{{"TIB", 40}, {"GIB", 30}, {"MIB", 20}, {"KIB", 10}, {"TB", 40}, {"GB", 30}, {"MB", 20}, {"KB", 10}, {"B", 0}}
	upper := strings.ToUpper(s)
	shift := uint(0)
	for _, u := range units {
		if strings.HasSuffix(upper, u.suffix) {
			upper, shift = strings.TrimSpace(strings.TrimSuffix(upper, u.suffix)), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(upper, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 8MiB or 1073741824)", s)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n << shift, nil
}

// rateFlag is a flag value for a rate: N/s, N/m, N/h or N/DURATION
// (ratelimit.ParseRate), setting a Rate's events and period; its burst is
// a flag of its own.
type rateFlag struct{ rate *ratelimit.Rate }

func (f rateFlag) String() string {
	if f.rate == nil || f.rate.Per == 0 {
		return ""
	}
	return strings.SplitN(f.rate.String(), " ", 2)[0]
}

func (f rateFlag) Set(s string) error {
	events, per, err := ratelimit.ParseRate(s)
	if err != nil {
		return err
	}
	f.rate.Events, f.rate.Per = events, per
	return nil
}

// reserveFlag is --disk-reserve: a size, or a percentage of the disk
// ("2%"); "0" keeps no reserve. Either replaces the default, which is both
// (localfs.DefaultReserve).
type reserveFlag struct{ r *localfs.Reserve }

func (f reserveFlag) String() string {
	if f.r == nil {
		return ""
	}
	return f.r.String()
}

func (f reserveFlag) Set(s string) error {
	if pct, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || !(p >= 0 && p <= localfs.MaxReservePercent) {
			return fmt.Errorf("%q is not a percentage of the disk from 0%% to %d%%", s, localfs.MaxReservePercent)
		}
		*f.r = localfs.Reserve{Percent: p}
		return nil
	}
	n, err := parseByteSize(s)
	if err != nil {
		return fmt.Errorf("%w, or a percentage of the disk such as 2%%", err)
	}
	*f.r = localfs.Reserve{Bytes: n}
	return nil
}

// processOptions are serve's settings for the process around the server:
// its log and its garbage collector.
type processOptions struct {
	Log logOptions
	// GCHeadroom is how far the heap may grow beyond what is live before
	// a collection (internal/gcpace); 0 leaves Go's own pacing.
	GCHeadroom int64
}

// serveConfig reads serve's flags and environment into an app.Config and
// the settings of the process.
func serveConfig(args []string, getenv func(string) string, stderr io.Writer) (app.Config, processOptions, error) {
	cfg := app.DefaultConfig()
	up := &cfg.Upload
	fs := flag.NewFlagSet("spool serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		origins   string
		proc      = processOptions{Log: logOptions{Level: slog.LevelInfo, Format: logText}}
		headroom  = byteSize(defaultGCHeadroom)
		single    = byteSize(up.SingleThreshold)
		chunk     = byteSize(up.ChunkSize)
		quota     = byteSize(up.DefaultQuota)
		maxVideo  = byteSize(up.MaxSize[upload.MediaVideo])
		maxAudio  = byteSize(up.MaxSize[upload.MediaAudio])
		maxImage  = byteSize(up.MaxSize[upload.MediaImage])
		maxInline = byteSize(up.MaxInlineImageSize)
		publicURL string
		gcsKey    string
		gcsSigner string
	)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address `HOST:PORT`")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "`DIR` for the database, files and generated secret")
	fs.StringVar(&publicURL, "public-url", "", "base `URL` of the URLs spool hands out (default http://ADDR)")
	// The unprefixed variables are the ones operators already set for
	// these engines; the SPOOL_ ones (read by parseFlags) win over them.
	fs.StringVar(&cfg.DatabaseURL, "database-url", getenv("DATABASE_URL"), "PostgreSQL `URL` (postgres://…); empty means SQLite in --data-dir")
	fs.StringVar(&cfg.RedisURL, "redis-url", getenv("REDIS_URL"), "Redis `URL` for progress and rate limits across replicas: redis://host:port/db, sentinels with ?master_name=NAME, or a cluster's node (docs/CONFIG.md); empty means in-process")
	fs.StringVar(&cfg.RedisCAFile, "redis-ca-file", "", "PEM `FILE` of the certificate authorities to check a rediss:// Redis against, instead of the system's (a managed Redis with a private CA)")
	fs.StringVar(&cfg.StorageURL, "storage-url", getenv("STORAGE_URL"), "storage `URL`: gs://bucket/prefix or file://DIR; empty means DIR/files")
	fs.BoolVar(&cfg.FsyncChunks, "fsync-chunks", false, "with local storage, fsync each chunk before acknowledging it, so an acknowledged chunk survives a power loss (slower)")
	fs.Var(reserveFlag{&cfg.DiskReserve}, "disk-reserve", "with local storage, the room (`SIZE` or N%) chunks leave free on its disk, for the database and processing once uploads fill it; 0 keeps none")
	fs.BoolVar(&up.DirectUploads, "storage-direct", false, "with gs:// storage, clients send chunks straight to GCS (V4 signed URLs)")
	fs.StringVar(&gcsKey, "gcs-credentials-file", "", "a service account's JSON key `FILE`: GCS authenticates with it and signs URLs with its private key")
	fs.StringVar(&gcsSigner, "gcs-signer-email", "", "service account `EMAIL` to sign GCS URLs as, through the IAM signBlob API")
	fs.TextVar(&cfg.MediaURLs, "media-urls", cfg.MediaURLs, "where downloads point: `MODE` signed (GCS signed URLs), proxy (through spool) or auto (signed if GCS can sign)")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated browser `ORIGINS` allowed cross-origin, or *")
	fs.TextVar(&proc.Log.Level, "log-level", proc.Log.Level, "log `LEVEL`: debug, info, warn or error")
	fs.Var(&proc.Log.Format, "log-format", "log `FORMAT`: text (for people) or json (one object a line, for log collectors)")
	fs.DurationVar(&cfg.SweepInterval, "sweep-interval", cfg.SweepInterval, "how often expired uploads are swept")
	fs.IntVar(&cfg.Jobs.ProcessingWorkers, "processing-workers", cfg.Jobs.ProcessingWorkers, "files whose bytes this replica hashes and derives from at once (default half the CPUs); it runs four processing jobs for each")
	fs.DurationVar(&cfg.Jobs.JobTimeout, "job-timeout", cfg.Jobs.JobTimeout, "longest a job (processing a file) may run before it is cancelled and retried")
	fs.DurationVar(&cfg.Jobs.RescueAfter, "job-rescue-after", cfg.Jobs.RescueAfter, "how long a job may stay running before it is taken for dead (its replica killed) and retried; longer than --job-timeout")
	fs.DurationVar(&cfg.Jobs.ShutdownTimeout, "job-shutdown-timeout", cfg.Jobs.ShutdownTimeout, "how long a stopping server lets running jobs finish before handing them to another replica")
	fs.DurationVar(&cfg.Jobs.OrphanInterval, "orphan-interval", jobs.DefaultConfig().OrphanInterval, "how often stored bytes no record owns (left by a crash) are looked for and removed")
	fs.DurationVar(&up.OrphanAge, "orphan-age", up.OrphanAge, "how old such bytes must be before they are removed (younger ones may belong to a transaction still open)")
	fs.BoolVar(&cfg.DeriveMedia, "media-processing", true, "make thumbnails and read dimensions, durations and codecs of completed files; false only checks their bytes")
	fs.StringVar(&cfg.Media.FFmpeg, "ffmpeg", "", "`PATH` of ffmpeg (poster frames, faststart remux, waveforms); default: found in PATH")
	fs.StringVar(&cfg.Media.FFprobe, "ffprobe", "", "`PATH` of ffprobe (video and audio facts); default: found in PATH")
	fs.DurationVar(&cfg.Media.Timeout, "processing-timeout", media.DefaultTimeout, "longest one ffmpeg or ffprobe run may take")
	fs.Int64Var(&cfg.Media.MaxPixels, "max-image-pixels", media.DefaultMaxPixels, "largest image, in pixels, that processing decodes (a larger one is refused from its header)")
	fs.StringVar(&up.WorkDir, "work-dir", "", "`DIR` for processing's scratch files; default: the system's temporary directory")
	fs.IntVar(&up.MaxBatchFiles, "max-batch-files", up.MaxBatchFiles, "files per initBatch")
	fs.IntVar(&cfg.MaxSubscriptions, "max-subscriptions", 100, "subscriptions one websocket may run at once")
	fs.Var(&single, "single-threshold", "largest `SIZE` uploaded as one SINGLE chunk")
	fs.Var(&chunk, "chunk-size", "`SIZE` of CHUNKED uploads' chunks (multiple of 256KiB, ≥ 5MiB)")
	fs.IntVar(&up.MaxChunkURLs, "max-chunk-urls", up.MaxChunkURLs, "signed URLs listed per upload")
	fs.DurationVar(&up.ChunkURLTTL, "chunk-url-ttl", up.ChunkURLTTL, "lifetime of a signed chunk URL")
	fs.DurationVar(&up.SessionTTL, "session-ttl", up.SessionTTL, "how long an upload may stay unfinished")
	fs.DurationVar(&up.MediaURLTTL, "media-url-ttl", up.MediaURLTTL, "lifetime of a signed download URL")
	fs.Var(&quota, "quota", "each user's quota `SIZE`")
	fs.Var(&maxVideo, "max-video-size", "largest video `SIZE`")
	fs.Var(&maxAudio, "max-audio-size", "largest audio `SIZE`")
	fs.Var(&maxImage, "max-image-size", "largest image `SIZE`")
	fs.Var(&maxInline, "max-inline-image-size", "largest image `SIZE` uploadImage takes in one multipart request")
	fs.StringVar(&cfg.OIDC.Issuer, "oidc-issuer", "", "also accept tokens of the OpenID Connect provider at issuer `URL` (https; the iss its tokens carry); its keys are found through URL/.well-known/openid-configuration")
	fs.StringVar(&cfg.OIDC.JWKSURL, "jwks-url", "", "the OIDC provider's key set `URL`, skipping discovery (needs --oidc-issuer)")
	fs.StringVar(&cfg.OIDC.Audience, "oidc-audience", "", "the `AUDIENCE` OIDC tokens must be for (aud): spool's client id or API identifier at the provider; required with --oidc-issuer")
	fs.DurationVar(&cfg.OIDC.ClockSkew, "oidc-clock-skew", auth.DefaultOIDCClockSkew, "leeway on OIDC tokens' exp, nbf and iat for clocks that disagree (at most 10m)")
	fs.StringVar(&cfg.OIDC.UserClaim, "oidc-user-claim", auth.DefaultOIDCUserClaim, "the OIDC token `CLAIM` whose string value names the user")
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", cfg.DrainGrace, "after SIGTERM, how long to keep serving with /readyz answering 503 before the listener closes: longer than the load balancer takes to notice (its health check's interval times its unhealthy threshold); 0 closes at once")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "after the drain grace, how long requests in flight (chunk PUTs, mutations) may take to finish before they are cut")
	lim := &cfg.Limits
	fs.Var(rateFlag{&lim.Mutations}, "rate-mutations", "each user's sustained `RATE` of GraphQL mutation operations (N/s, N/m, N/h or N/DURATION); shared by all replicas through Redis")
	fs.IntVar(&lim.Mutations.Burst, "rate-mutations-burst", lim.Mutations.Burst, "mutation operations a user may send at once after a quiet spell")
	fs.Var(rateFlag{&lim.DataPlane}, "rate-chunks", "each user's sustained `RATE` of data-plane requests (chunk PUTs, HEADs); shared by all replicas through Redis")
	fs.IntVar(&lim.DataPlane.Burst, "rate-chunks-burst", lim.DataPlane.Burst, "data-plane requests a user may send at once after a quiet spell")
	fs.IntVar(&lim.MaxParallelChunksPerUpload, "max-parallel-chunks-per-upload", lim.MaxParallelChunksPerUpload, "chunk PUTs of one upload running at once on one replica; one more answers 429")
	fs.IntVar(&lim.MaxWebsocketsPerUser, "max-websockets-per-user", lim.MaxWebsocketsPerUser, "websockets one user keeps open on one replica; one more is closed with 4429")
	fs.DurationVar(&lim.BodyIdleTimeout, "body-idle-timeout", lim.BodyIdleTimeout, "cut off a chunk or GraphQL request body that sends no byte for this long (the chunk is recorded failed), or a download whose client takes none")
	fs.DurationVar(&lim.ReadHeaderTimeout, "read-header-timeout", lim.ReadHeaderTimeout, "longest a client may take to send a request's headers")
	fs.DurationVar(&lim.IdleTimeout, "idle-timeout", lim.IdleTimeout, "close keep-alive connections idle this long")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at /metrics on a `HOST:PORT` of their own instead of on --addr")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", "", "serve Go's pprof profiles at /debug/pprof/ on a loopback `HOST:PORT` of their own (debugging; off when empty)")
	fs.Var(&headroom, "gc-headroom", "let the heap grow by `SIZE` beyond what is live before Go collects garbage (where GOGC=100 allows less), and a heap over twice SIZE by half of itself: up to that much more memory, less CPU for small requests; 0 leaves Go's pacing; ignored when GOGC is set")
	if err := parseFlags(fs, args, getenv); err != nil {
		return cfg, proc, err
	}
	if fs.NArg() > 0 {
		return cfg, proc, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if secret := getenv("SPOOL_JWT_SECRET"); secret != "" {
		b, err := auth.ParseSecret(secret)
		if err != nil {
			return cfg, proc, fmt.Errorf("SPOOL_JWT_SECRET: %w", err)
		}
		cfg.JWTSecret = b
	}
	cfg.PublicURL = strings.TrimRight(publicURL, "/")
	if origins != "" {
		for o := range strings.SplitSeq(origins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				origin, err := allowedOrigin(o)
				if err != nil {
					return cfg, proc, err
				}
				cfg.AllowedOrigins = append(cfg.AllowedOrigins, origin)
			}
		}
	}
	if err := gcsSigning(&cfg, gcsKey, gcsSigner, getenv); err != nil {
		return cfg, proc, err
	}
	up.SingleThreshold, up.ChunkSize, up.DefaultQuota = int64(single), int64(chunk), int64(quota)
	up.MaxInlineImageSize = int64(maxInline)
	up.MaxSize = map[upload.MediaType]int64{
		upload.MediaVideo: int64(maxVideo), upload.MediaAudio: int64(maxAudio), upload.MediaImage: int64(maxImage),
	}
	if err := checkServeConfig(cfg); err != nil {
		return cfg, proc, err
	}
	if err := checkDiskReserve(cfg, given(fs, getenv)); err != nil {
		return cfg, proc, err
	}
	// An operator's GOGC turns the pacing off (paceGC), so spool reads
	// it, and one the runtime would silently run at 100 instead is a
	// mistake to say, not a setting to step aside for.
	if v := getenv("GOGC"); v != "" && v != "off" {
		if _, err := strconv.ParseInt(v, 10, 32); err != nil {
			return cfg, proc, fmt.Errorf("GOGC=%q is neither a whole number nor off: Go would ignore it and collect at GOGC=100; fix it, or unset it to let --gc-headroom pace the collector", v)
		}
	}
	if headroom > gcpace.MaxHeadroom {
		return cfg, proc, fmt.Errorf("--gc-headroom %d is more than %d (4GiB): with that much the collector would hardly run", int64(headroom), gcpace.MaxHeadroom)
	}
	proc.GCHeadroom = int64(headroom)
	return cfg, proc, nil
}

// gcsSigning sets cfg.GCS from --gcs-credentials-file or
// --gcs-signer-email; with neither, GCS signs with what Application
// Default Credentials offer, if anything. The two are exclusive: a key
// file signs as its own account, locally, and signing as another account
// through IAM with it would be a third mode nobody asked for yet.
func gcsSigning(cfg *app.Config, keyFile, signer string, getenv func(string) string) error {
	if keyFile == "" && signer == "" {
		return nil
	}
	if keyFile != "" && signer != "" {
		return errors.New("--gcs-credentials-file and --gcs-signer-email exclude each other: the key file signs as its own account; give one")
	}
	if !strings.HasPrefix(cfg.StorageURL, "gs://") {
		return errors.New("--gcs-credentials-file and --gcs-signer-email need --storage-url gs://bucket/prefix")
	}
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return fmt.Errorf("--gcs-credentials-file: %w", err)
		}
		signing, err := gcs.ServiceAccountKey(b)
		if err != nil {
			return fmt.Errorf("--gcs-credentials-file %s: %w", keyFile, err)
		}
		cfg.GCS.CredentialsJSON, cfg.GCS.SignedURLs = b, signing
	} else {
		if a, err := mail.ParseAddress(signer); err != nil || a.Address != signer || a.Name != "" {
			return fmt.Errorf("--gcs-signer-email %q is not an e-mail address (a service account's, such as spool@PROJECT.iam.gserviceaccount.com)", signer)
		}
		cfg.GCS.SignedURLs = &gcs.SignedURLs{GoogleAccessID: signer}
	}
	// The library points signed URLs at STORAGE_EMULATOR_HOST but keeps
	// https:// unless told the emulator speaks http (its default).
	if h := getenv("STORAGE_EMULATOR_HOST"); h != "" && !strings.HasPrefix(h, "https://") {
		cfg.GCS.SignedURLs.Insecure = true
	}
	return nil
}

// allowedOrigin checks one --allowed-origins entry and spells it as a
// browser sends its Origin header, which spool compares it with as is:
// scheme://host[:port] in lowercase, without the scheme's default port or
// a trailing slash. An entry that is not an origin ("app.example.com", a
// page's URL) would otherwise never match, and the browser's only hint
// would be a CORS failure.
func allowedOrigin(s string) (string, error) {
	if s == "*" {
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		strings.TrimRight(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("--allowed-origins: %q is not an origin: write scheme://host[:port], as a browser sends it (e.g. https://app.example.com), or *", s)
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		host = strings.ToLower(u.Hostname())
		if strings.Contains(host, ":") {
			host = "[" + host + "]" // an IPv6 address
		}
	}
	return u.Scheme + "://" + host, nil
}

// checkServeConfig rejects settings spool cannot run with, naming them.
// upload.Config reads zero as "the default", so an explicit zero on the
// command line is refused here rather than silently replaced.
func checkServeConfig(cfg app.Config) error {
	up := cfg.Upload
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"--max-batch-files", int64(up.MaxBatchFiles)}, {"--max-chunk-urls", int64(up.MaxChunkURLs)},
		{"--quota", up.DefaultQuota}, {"--single-threshold", up.SingleThreshold}, {"--chunk-size", up.ChunkSize},
		{"--chunk-url-ttl", int64(up.ChunkURLTTL)}, {"--session-ttl", int64(up.SessionTTL)}, {"--media-url-ttl", int64(up.MediaURLTTL)},
		{"--max-subscriptions", int64(cfg.MaxSubscriptions)},
		{"--processing-workers", int64(cfg.Jobs.ProcessingWorkers)}, {"--job-timeout", int64(cfg.Jobs.JobTimeout)},
		{"--job-rescue-after", int64(cfg.Jobs.RescueAfter)}, {"--job-shutdown-timeout", int64(cfg.Jobs.ShutdownTimeout)},
		{"--processing-timeout", int64(cfg.Media.Timeout)}, {"--max-image-pixels", cfg.Media.MaxPixels},
		{"--orphan-interval", int64(cfg.Jobs.OrphanInterval)}, {"--orphan-age", int64(up.OrphanAge)},
		{"--shutdown-timeout", int64(cfg.ShutdownTimeout)},
		{"--rate-mutations-burst", int64(cfg.Limits.Mutations.Burst)}, {"--rate-chunks-burst", int64(cfg.Limits.DataPlane.Burst)},
		{"--max-parallel-chunks-per-upload", int64(cfg.Limits.MaxParallelChunksPerUpload)},
		{"--max-websockets-per-user", int64(cfg.Limits.MaxWebsocketsPerUser)},
		{"--body-idle-timeout", int64(cfg.Limits.BodyIdleTimeout)}, {"--read-header-timeout", int64(cfg.Limits.ReadHeaderTimeout)},
		{"--idle-timeout", int64(cfg.Limits.IdleTimeout)},
	} {
		if c.v <= 0 {
			return fmt.Errorf("%s must be positive", c.name)
		}
	}
	if err := cfg.Upload.Validate(); err != nil {
		return err
	}
	if cfg.Jobs.ProcessingWorkers > jobs.MaxProcessingWorkers {
		return fmt.Errorf("--processing-workers %d is more than %d; processing reads and hashes whole files, so use at most a few per CPU", cfg.Jobs.ProcessingWorkers, jobs.MaxProcessingWorkers)
	}
	if cfg.Jobs.RescueAfter <= cfg.Jobs.JobTimeout {
		return fmt.Errorf("--job-rescue-after (%v) must be longer than --job-timeout (%v): a job still running would be started a second time", cfg.Jobs.RescueAfter, cfg.Jobs.JobTimeout)
	}
	for flag, tool := range map[string]string{"--ffmpeg": cfg.Media.FFmpeg, "--ffprobe": cfg.Media.FFprobe} {
		if _, err := exec.LookPath(tool); tool != "" && err != nil {
			return fmt.Errorf("%s %q: %v", flag, tool, err)
		}
	}
	if cfg.Upload.WorkDir != "" {
		if info, err := os.Stat(cfg.Upload.WorkDir); err != nil || !info.IsDir() {
			return fmt.Errorf("--work-dir %q is not a directory", cfg.Upload.WorkDir)
		}
	}
	if cfg.DrainGrace < 0 {
		return fmt.Errorf("--drain-grace must not be negative, got %v", cfg.DrainGrace)
	}
	if cfg.SweepInterval < time.Second {
		return fmt.Errorf("sweep interval must be at least 1s, got %v", cfg.SweepInterval)
	}
	if cfg.PublicURL != "" {
		// Every URL spool hands out is this one with a path appended: a
		// query or a fragment would end up in the middle of them.
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(u.Host, ":") {
			return fmt.Errorf("public URL must be http:// or https://, a host and at most a path, got %q", cfg.PublicURL)
		}
	}
	if cfg.DataDir == "" {
		return errors.New("data dir must not be empty")
	}
	if up.DirectUploads && !strings.HasPrefix(cfg.StorageURL, "gs://") {
		return errors.New("--storage-direct needs --storage-url gs://bucket/prefix")
	}
	if err := checkDebugAddr(cfg.DebugAddr); err != nil {
		return err
	}
	if err := checkOIDC(cfg.OIDC); err != nil {
		return err
	}
	if err := checkMetricsAddr(cfg.MetricsAddr, cfg.Addr, cfg.DebugAddr); err != nil {
		return err
	}
	for name, u := range map[string]string{"--database-url": cfg.DatabaseURL, "--redis-url": cfg.RedisURL, "--storage-url": cfg.StorageURL} {
		if u != "" && !strings.Contains(u, "://") {
			return fmt.Errorf("%s %q is not a URL", name, u)
		}
	}
	// Read now, so that a wrong one is refused before anything starts
	// (its error holds no password).
	if cfg.RedisURL != "" {
		if _, err := redisurl.Parse(cfg.RedisURL, redisurl.Settings{CAFile: cfg.RedisCAFile}); err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
	} else if cfg.RedisCAFile != "" {
		return errors.New("--redis-ca-file is for --redis-url rediss://…; without a Redis URL it does nothing: leave it out")
	}
	return nil
}

// checkDiskReserve refuses --disk-reserve given with gs:// storage: there
// it would do nothing, and an operator who set it expects it to.
// (--fsync-chunks does something there: SQLite's commits wait for their
// flush.)
func checkDiskReserve(cfg app.Config, given map[string]bool) error {
	if strings.HasPrefix(cfg.StorageURL, "gs://") && given["disk-reserve"] {
		return fmt.Errorf("--disk-reserve (or %s) is for local storage; with --storage-url gs://… it does nothing (GCS's room is not this disk's): leave it out", envName("disk-reserve"))
	}
	return nil
}

// given returns the names of fs's flags set on the command line or by
// their environment variable.
func given(fs *flag.FlagSet, getenv func(string) string) map[string]bool {
	set := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if getenv(envName(f.Name)) != "" {
			set[f.Name] = true
		}
	})
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// checkDebugAddr accepts an empty --debug-addr (off) or a loopback
// HOST:PORT. Profiles need no token and show the program's internals (and
// a CPU profile or trace costs CPU for as long as asked), so they are only
// served where nobody but the machine's own users can reach them; to look
// from elsewhere, forward the port (ssh -L, kubectl port-forward).
func checkDebugAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--debug-addr %q is not HOST:PORT: %v", addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (port != "0" && p == 0) {
		return fmt.Errorf("--debug-addr %q: the port must be a number from 0 to 65535", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--debug-addr %q: the host must be loopback (127.0.0.1, ::1 or localhost): the profiles are served without authentication", addr)
	}
	return nil
}

// oidcFlag names the flag of an auth.OIDCConfig setting, or "".
func oidcFlag(setting string) string {
	switch setting {
	case "Issuer":
		return "--oidc-issuer"
	case "JWKSURL":
		return "--jwks-url"
	case "Audience":
		return "--oidc-audience"
	case "ClockSkew":
		return "--oidc-clock-skew"
	case "UserClaim":
		return "--oidc-user-claim"
	}
	return ""
}

// checkOIDC validates the OIDC settings, naming the flag that is wrong.
// auth.OIDCConfig reads an empty user claim as the default, so an
// explicit empty one is refused here rather than silently replaced.
func checkOIDC(c auth.OIDCConfig) error {
	if c.UserClaim == "" {
		return errors.New("--oidc-user-claim must not be empty (the default is sub)")
	}
	err := c.Validate()
	var bad *auth.OIDCSettingError
	if errors.As(err, &bad) {
		if flag := oidcFlag(bad.Setting); flag != "" {
			return fmt.Errorf("%s: %w", flag, bad.Err)
		}
	}
	return err
}

// checkMetricsAddr accepts an empty --metrics-addr (metrics on --addr)
// or a HOST:PORT other than --addr's and --debug-addr's. Unlike profiles,
// metrics may be served on any interface (":9090"), for a scraper on
// another machine: they hold counts, not secrets.
func checkMetricsAddr(addr, apiAddr, debugAddr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %q is not HOST:PORT: %v", addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (port != "0" && p == 0) {
		return fmt.Errorf("--metrics-addr %q: the port must be a number from 0 to 65535", addr)
	}
	if port != "0" && (addr == apiAddr || addr == debugAddr) {
		return fmt.Errorf("--metrics-addr %q is taken by --addr or --debug-addr: give the metrics a port of their own", addr)
	}
	return nil
}
