// Package upload is spool's domain: it plans batches, runs each upload
// session's state machine, receives and verifies chunks, keeps the
// per-user quota, turns finished uploads into media files, sweeps what
// failures leave behind and streams progress to watchers. The rules it
// keeps, and the tests that guard them, are in docs/DESIGN.md; comments
// here cite its sections and invariants.
//
// It knows no HTTP, no GraphQL and no particular storage or pub/sub
// engine: those reach it through the interfaces it defines (Store and its
// optional abilities DirectStore and ObjectLinker, Broker and Feed,
// Signer), and its errors are *Error values with stable codes.
//
// ent is its persistence model, not an adapter behind an interface: the
// Service runs ent transactions whose conditional updates are the state
// machine's guards, so it is safe across replicas sharing one database.
// Several answers are ent entities (*ent.MediaFile, *ent.User, the
// *ent.UploadSession inside Session, the *ent.MediaFileQuery of
// MediaQuery), returned as they are so that gqlgen binds the GraphQL types
// to them (autobind) without a copy. They are read-only outside this
// package: nothing else may change them, neither their fields nor their
// rows through ent, since a change made there would bypass the
// transitions, the version bumps and the quota.
package upload
