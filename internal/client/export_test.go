package client

// FindInLibrary is findInLibrary, for tests of how it asks.
var FindInLibrary = (*Client).findInLibrary
