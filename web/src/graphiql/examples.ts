import type { GraphiQLProps } from "graphiql";

type TabDefinition = NonNullable<GraphiQLProps["defaultTabs"]>[number];

// The tabs a fresh browser opens with. GraphiQL names each tab after its
// operation (Me, MyMedia, InitBatch, MyUploads); once someone edits them,
// GraphiQL's own storage keeps their tabs instead.

const me = `# Who the token belongs to, and how much
# of the quota is used.
query Me {
  me {
    id
    name
    usedBytes
    quotaBytes
  }
}
`;

const myMedia = `# Your files, newest first.
query MyMedia {
  userMedia(first: 10) {
    edges {
      node {
        id
        fileName
        mimeType
        mediaType
        fileSize
        status
        url
        createdAt
      }
    }
    pageInfo {
      hasNextPage
      endCursor
    }
    totalCount
  }
}
`;

const initBatch = `# Plans an upload, reserving its size against your quota.
# The file is described in Variables (below).
# Next, send the file's bytes to each chunkUrls[].url
# (with its method and headers), then run
#   mutation { complete(uploadId: "…") { id status } }
# Running this again with the same fingerprint resumes
# the unfinished upload instead of planning a new one.
mutation InitBatch($input: InitBatchInput!) {
  initBatch(input: $input) {
    id
    uploads {
      id
      fileName
      strategy
      totalChunks
      status
      chunkUrls {
        chunkIndex
        url
        method
        headers {
          name
          value
        }
        offset
        size
        expiresAt
      }
      expiresAt
    }
  }
}
`;

const initBatchVariables = `{
  "input": {
    "files": [
      {
        "fileName": "pixel.png",
        "size": 70,
        "mimeType": "image/png",
        "fingerprint": "graphiql-example:pixel.png:70"
      }
    ]
  }
}
`;

const myUploads = `# Progress of all your uploads: the
# unfinished ones first, then every change,
# until you stop it. Start an upload
# elsewhere (the Uploader) and watch.
# A completed upload's file is checked
# next: mediaStatus PROCESSING, then READY.
subscription MyUploads {
  myUploads {
    uploadId
    batchId
    status
    percent
    uploadedBytes
    totalBytes
    uploadedChunks
    totalChunks
    mediaId
    mediaStatus
    error
  }
}
`;

export const exampleTabs: TabDefinition[] = [
  { query: me },
  { query: myMedia },
  { query: initBatch, variables: initBatchVariables },
  { query: myUploads },
];
