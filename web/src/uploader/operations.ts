// The GraphQL documents the uploader sends, with the shapes of their
// answers. schema.graphqls is the contract; these types mirror only the
// fields asked for here.
import { gql } from "@urql/core";
import type { ChunkTarget } from "./upload";

export type UploadStatus =
  | "INITIALIZED"
  | "UPLOADING"
  | "ASSEMBLING"
  | "COMPLETED"
  | "FAILED"
  | "CANCELLED"
  | "EXPIRED";

export type MediaType = "IMAGE" | "VIDEO" | "AUDIO";
export type MediaStatus = "PENDING" | "PROCESSING" | "READY" | "FAILED";

export interface Progress {
  uploadId: string;
  batchId: string;
  status: UploadStatus;
  uploadedBytes: number;
  totalBytes: number;
  percent: number;
  uploadedChunks: number;
  totalChunks: number;
  failedChunks: number[];
  mediaId: string | null;
  /** Set with mediaId: PROCESSING until the content is checked, then READY or FAILED. */
  mediaStatus: MediaStatus | null;
  error: string | null;
}

// The engine's ChunkTarget is exactly the ChunkURL fields asked for here.
export type ChunkURL = ChunkTarget;

export interface UploadSession {
  id: string;
  batchId: string;
  fileName: string;
  totalSize: number;
  chunkSize: number;
  totalChunks: number;
  status: UploadStatus;
  chunkUrls: ChunkURL[];
  progress: Progress;
}

export interface MediaFile {
  id: string;
  fileName: string;
  mimeType: string;
  mediaType: MediaType;
  fileSize: number;
  status: MediaStatus;
  createdAt: string;
  url: string;
}

export interface User {
  name: string;
  usedBytes: number;
  quotaBytes: number;
}

export interface FileInput {
  fileName: string;
  size: number;
  mimeType: string;
  fingerprint: string;
}

export interface MediaPage {
  edges: { node: MediaFile | null }[] | null;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  totalCount: number;
}

const progressFields = `
  fragment ProgressFields on UploadProgress {
    uploadId batchId status uploadedBytes totalBytes percent
    uploadedChunks totalChunks failedChunks mediaId mediaStatus error
  }`;

const chunkURLFields = `
  fragment ChunkURLFields on ChunkURL {
    chunkIndex url method headers { name value } offset size expiresAt
  }`;

const mediaFields = `
  fragment MediaFields on MediaFile {
    id fileName mimeType mediaType fileSize status createdAt url
  }`;

export const MeQuery = gql<{ me: User }, Record<string, never>>`
  query Me { me { name usedBytes quotaBytes } }
`;

export const InitBatchMutation = gql<
  { initBatch: { id: string; uploads: UploadSession[] } },
  { files: FileInput[] }
>`
  mutation InitBatch($files: [FileInput!]!) {
    initBatch(input: { files: $files }) {
      id
      uploads {
        id batchId fileName totalSize chunkSize totalChunks status
        chunkUrls { ...ChunkURLFields }
        progress { ...ProgressFields }
      }
    }
  }
  ${chunkURLFields}
  ${progressFields}
`;

export const RequestChunkUrlMutation = gql<
  { requestChunkUrl: ChunkURL },
  { uploadId: string; chunkIndex: number }
>`
  mutation RequestChunkUrl($uploadId: ID!, $chunkIndex: Int!) {
    requestChunkUrl(uploadId: $uploadId, chunkIndex: $chunkIndex) { ...ChunkURLFields }
  }
  ${chunkURLFields}
`;

export const RetryMutation = gql<{ retry: ChunkURL[] }, { uploadId: string }>`
  mutation Retry($uploadId: ID!) {
    retry(uploadId: $uploadId) { ...ChunkURLFields }
  }
  ${chunkURLFields}
`;

export const CompleteMutation = gql<{ complete: MediaFile }, { uploadId: string }>`
  mutation Complete($uploadId: ID!) {
    complete(uploadId: $uploadId) { ...MediaFields }
  }
  ${mediaFields}
`;

export const CancelMutation = gql<
  { cancel: { id: string; status: UploadStatus } },
  { uploadId: string }
>`
  mutation Cancel($uploadId: ID!) {
    cancel(uploadId: $uploadId) { id status }
  }
`;

export const DeleteMediaMutation = gql<{ deleteMedia: string }, { id: string }>`
  mutation DeleteMedia($id: ID!) { deleteMedia(id: $id) }
`;

// The uploads a myUploads snapshot names carry no file name; this fills
// in what a row needs to show one the page did not start.
export const UploadQuery = gql<
  { upload: Pick<UploadSession, "id" | "fileName" | "totalSize" | "status" | "progress"> | null },
  { id: string }
>`
  query Upload($id: ID!) {
    upload(id: $id) { id fileName totalSize status progress { ...ProgressFields } }
  }
  ${progressFields}
`;

export const MediaQuery = gql<{ node: MediaFile | null }, { id: string }>`
  query Media($id: ID!) {
    node(id: $id) { ... on MediaFile { ...MediaFields } }
  }
  ${mediaFields}
`;

export const UserMediaQuery = gql<
  { userMedia: MediaPage },
  { first: number; after: string | null; where: { mediaType?: MediaType } | null }
>`
  query UserMedia($first: Int!, $after: Cursor, $where: MediaFileWhereInput) {
    userMedia(first: $first, after: $after, where: $where,
              orderBy: { field: CREATED_AT, direction: DESC }) {
      edges { node { ...MediaFields } }
      pageInfo { hasNextPage endCursor }
      totalCount
    }
  }
  ${mediaFields}
`;

export const MyUploadsSubscription = gql<{ myUploads: Progress }, Record<string, never>>`
  subscription MyUploads { myUploads { ...ProgressFields } }
  ${progressFields}
`;
