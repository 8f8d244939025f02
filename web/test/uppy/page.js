// The test page's script: Uppy as its documentation configures it for a
// tus server, plus a record of what happened for the test to read
// (window.uppyRecord). The endpoint and the bearer token come in the URL's
// fragment (#endpoint=…&token=…), which the static server never sees.
import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import Tus from '@uppy/tus';

import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';

const params = new URLSearchParams(location.hash.slice(1));
const chunkSize = Number(params.get('chunkSize')) || Infinity;

const record = { progress: {}, succeeded: {}, failed: {}, complete: null };
window.uppyRecord = record;

const uppy = new Uppy({ autoProceed: false })
  .use(Dashboard, { inline: true, target: '#uppy', proudlyDisplayPoweredByUppy: false })
  .use(Tus, {
    endpoint: params.get('endpoint'),
    headers: { Authorization: `Bearer ${params.get('token')}` },
    chunkSize,
    retryDelays: [],
  });

uppy.on('upload-progress', (file, progress) => {
  (record.progress[file.name] ??= []).push(progress.bytesUploaded);
});
// The last response's XMLHttpRequest: spool names the MediaFile there.
uppy.on('upload-success', (file, response) => {
  record.succeeded[file.name] = {
    at: Date.now(),
    uploadURL: response.uploadURL,
    mediaId: response.body?.xhr?.getResponseHeader('Spool-Media-Id') ?? null,
  };
});
uppy.on('upload-error', (file, error, response) => {
  record.failed[file.name] = { message: String(error?.message ?? error), status: response?.status ?? null };
});
uppy.on('complete', (result) => {
  record.complete = { successful: result.successful?.length ?? 0, failed: result.failed?.length ?? 0 };
});
