// The GraphQL documents the uploader sends. Their types are generated
// from spool's schema by graphql-codegen (`npm run codegen` writes
// ./gql/; see codegen.ts): a field asked for that the schema lacks, or
// a type that changed, fails the build. The names below are what the
// rest of the uploader calls those generated types.
import { graphql } from "./gql";
import type * as Gen from "./gql/graphql";

export type { FileInput, MediaStatus, MediaType, UploadStatus } from "./gql/graphql";
export type Progress = Gen.ProgressFieldsFragment;
export type ChunkURL = Gen.ChunkUrlFieldsFragment;
export type MediaFile = Gen.MediaFieldsFragment;
export type UploadSession = Gen.InitBatchMutation["initBatch"]["uploads"][number];
export type User = Gen.MeQuery["me"];
export type MediaPage = Gen.UserMediaQuery["userMedia"];

graphql(`
  fragment ProgressFields on UploadProgress {
    uploadId batchId status uploadedBytes totalBytes percent
    uploadedChunks totalChunks failedChunks mediaId mediaStatus error
    media { ...MediaFields }
  }
`);

graphql(`
  fragment ChunkURLFields on ChunkURL {
    chunkIndex url method headers { name value } offset size expiresAt
  }
`);

graphql(`
  fragment MediaFields on MediaFile {
    id fileName mimeType mediaType fileSize status createdAt url
    width height durationSeconds placeholder processingError
    thumbnails { width height mimeType url }
    audio { peaks }
  }
`);

export const MeQuery = graphql(`
  query Me { me { name usedBytes quotaBytes } }
`);

export const InitBatchMutation = graphql(`
  mutation InitBatch($files: [FileInput!]!) {
    initBatch(input: { files: $files }) {
      id
      uploads {
        id batchId fileName totalSize chunkSize totalChunks status
        chunkUrls { ...ChunkURLFields }
        progress { ...ProgressFields }
        deduplicated
        media { ...MediaFields }
      }
    }
  }
`);

export const RequestChunkUrlMutation = graphql(`
  mutation RequestChunkUrl($uploadId: ID!, $chunkIndex: Int!) {
    requestChunkUrl(uploadId: $uploadId, chunkIndex: $chunkIndex) { ...ChunkURLFields }
  }
`);

export const RetryMutation = graphql(`
  mutation Retry($uploadId: ID!) {
    retry(uploadId: $uploadId) { ...ChunkURLFields }
  }
`);

export const CompleteMutation = graphql(`
  mutation Complete($uploadId: ID!) {
    complete(uploadId: $uploadId) { ...MediaFields }
  }
`);

export const CancelMutation = graphql(`
  mutation Cancel($uploadId: ID!) {
    cancel(uploadId: $uploadId) { id status }
  }
`);

export const DeleteMediaMutation = graphql(`
  mutation DeleteMedia($id: ID!) { deleteMedia(id: $id) }
`);

// The uploads a myUploads snapshot names carry no file name; this fills
// in what a row needs to show one the page did not start.
export const UploadQuery = graphql(`
  query Upload($id: ID!) {
    upload(id: $id) { id fileName totalSize status progress { ...ProgressFields } }
  }
`);

export const MediaQuery = graphql(`
  query Media($id: ID!) {
    node(id: $id) { ... on MediaFile { ...MediaFields } }
  }
`);

export const UserMediaQuery = graphql(`
  query UserMedia($first: Int!, $after: Cursor, $where: MediaFileWhereInput) {
    userMedia(first: $first, after: $after, where: $where,
              orderBy: { field: CREATED_AT, direction: DESC }) {
      edges { node { ...MediaFields } }
      pageInfo { hasNextPage endCursor }
      totalCount
    }
  }
`);

export const MyUploadsSubscription = graphql(`
  subscription MyUploads { myUploads { ...ProgressFields } }
`);
