/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  fragment ProgressFields on UploadProgress {\n    uploadId batchId status uploadedBytes totalBytes percent\n    uploadedChunks totalChunks failedChunks mediaId mediaStatus error\n    media { ...MediaFields }\n  }\n": typeof types.ProgressFieldsFragmentDoc,
    "\n  fragment ChunkURLFields on ChunkURL {\n    chunkIndex url method headers { name value } offset size expiresAt\n  }\n": typeof types.ChunkUrlFieldsFragmentDoc,
    "\n  fragment MediaFields on MediaFile {\n    id fileName mimeType mediaType fileSize status createdAt url\n    width height durationSeconds placeholder processingError\n    thumbnails { width height mimeType url }\n    audio { peaks }\n  }\n": typeof types.MediaFieldsFragmentDoc,
    "\n  query Me { me { name usedBytes quotaBytes } }\n": typeof types.MeDocument,
    "\n  mutation InitBatch($files: [FileInput!]!) {\n    initBatch(input: { files: $files }) {\n      id\n      uploads {\n        id batchId fileName totalSize chunkSize totalChunks status\n        chunkUrls { ...ChunkURLFields }\n        progress { ...ProgressFields }\n        deduplicated\n        media { ...MediaFields }\n      }\n    }\n  }\n": typeof types.InitBatchDocument,
    "\n  mutation RequestChunkUrl($uploadId: ID!, $chunkIndex: Int!) {\n    requestChunkUrl(uploadId: $uploadId, chunkIndex: $chunkIndex) { ...ChunkURLFields }\n  }\n": typeof types.RequestChunkUrlDocument,
    "\n  mutation Retry($uploadId: ID!) {\n    retry(uploadId: $uploadId) { ...ChunkURLFields }\n  }\n": typeof types.RetryDocument,
    "\n  mutation Complete($uploadId: ID!) {\n    complete(uploadId: $uploadId) { ...MediaFields }\n  }\n": typeof types.CompleteDocument,
    "\n  mutation Cancel($uploadId: ID!) {\n    cancel(uploadId: $uploadId) { id status }\n  }\n": typeof types.CancelDocument,
    "\n  mutation DeleteMedia($id: ID!) { deleteMedia(id: $id) }\n": typeof types.DeleteMediaDocument,
    "\n  query Upload($id: ID!) {\n    upload(id: $id) { id fileName totalSize status progress { ...ProgressFields } }\n  }\n": typeof types.UploadDocument,
    "\n  query Media($id: ID!) {\n    node(id: $id) { ... on MediaFile { ...MediaFields } }\n  }\n": typeof types.MediaDocument,
    "\n  query UserMedia($first: Int!, $after: Cursor, $where: MediaFileWhereInput) {\n    userMedia(first: $first, after: $after, where: $where,\n              orderBy: { field: CREATED_AT, direction: DESC }) {\n      edges { node { ...MediaFields } }\n      pageInfo { hasNextPage endCursor }\n      totalCount\n    }\n  }\n": typeof types.UserMediaDocument,
    "\n  subscription MyUploads { myUploads { ...ProgressFields } }\n": typeof types.MyUploadsDocument,
};
const documents: Documents = {
    "\n  fragment ProgressFields on UploadProgress {\n    uploadId batchId status uploadedBytes totalBytes percent\n    uploadedChunks totalChunks failedChunks mediaId mediaStatus error\n    media { ...MediaFields }\n  }\n": types.ProgressFieldsFragmentDoc,
    "\n  fragment ChunkURLFields on ChunkURL {\n    chunkIndex url method headers { name value } offset size expiresAt\n  }\n": types.ChunkUrlFieldsFragmentDoc,
    "\n  fragment MediaFields on MediaFile {\n    id fileName mimeType mediaType fileSize status createdAt url\n    width height durationSeconds placeholder processingError\n    thumbnails { width height mimeType url }\n    audio { peaks }\n  }\n": types.MediaFieldsFragmentDoc,
    "\n  query Me { me { name usedBytes quotaBytes } }\n": types.MeDocument,
    "\n  mutation InitBatch($files: [FileInput!]!) {\n    initBatch(input: { files: $files }) {\n      id\n      uploads {\n        id batchId fileName totalSize chunkSize totalChunks status\n        chunkUrls { ...ChunkURLFields }\n        progress { ...ProgressFields }\n        deduplicated\n        media { ...MediaFields }\n      }\n    }\n  }\n": types.InitBatchDocument,
    "\n  mutation RequestChunkUrl($uploadId: ID!, $chunkIndex: Int!) {\n    requestChunkUrl(uploadId: $uploadId, chunkIndex: $chunkIndex) { ...ChunkURLFields }\n  }\n": types.RequestChunkUrlDocument,
    "\n  mutation Retry($uploadId: ID!) {\n    retry(uploadId: $uploadId) { ...ChunkURLFields }\n  }\n": types.RetryDocument,
    "\n  mutation Complete($uploadId: ID!) {\n    complete(uploadId: $uploadId) { ...MediaFields }\n  }\n": types.CompleteDocument,
    "\n  mutation Cancel($uploadId: ID!) {\n    cancel(uploadId: $uploadId) { id status }\n  }\n": types.CancelDocument,
    "\n  mutation DeleteMedia($id: ID!) { deleteMedia(id: $id) }\n": types.DeleteMediaDocument,
    "\n  query Upload($id: ID!) {\n    upload(id: $id) { id fileName totalSize status progress { ...ProgressFields } }\n  }\n": types.UploadDocument,
    "\n  query Media($id: ID!) {\n    node(id: $id) { ... on MediaFile { ...MediaFields } }\n  }\n": types.MediaDocument,
    "\n  query UserMedia($first: Int!, $after: Cursor, $where: MediaFileWhereInput) {\n    userMedia(first: $first, after: $after, where: $where,\n              orderBy: { field: CREATED_AT, direction: DESC }) {\n      edges { node { ...MediaFields } }\n      pageInfo { hasNextPage endCursor }\n      totalCount\n    }\n  }\n": types.UserMediaDocument,
    "\n  subscription MyUploads { myUploads { ...ProgressFields } }\n": types.MyUploadsDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  fragment ProgressFields on UploadProgress {\n    uploadId batchId status uploadedBytes totalBytes percent\n    uploadedChunks totalChunks failedChunks mediaId mediaStatus error\n    media { ...MediaFields }\n  }\n"): (typeof documents)["\n  fragment ProgressFields on UploadProgress {\n    uploadId batchId status uploadedBytes totalBytes percent\n    uploadedChunks totalChunks failedChunks mediaId mediaStatus error\n    media { ...MediaFields }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  fragment ChunkURLFields on ChunkURL {\n    chunkIndex url method headers { name value } offset size expiresAt\n  }\n"): (typeof documents)["\n  fragment ChunkURLFields on ChunkURL {\n    chunkIndex url method headers { name value } offset size expiresAt\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  fragment MediaFields on MediaFile {\n    id fileName mimeType mediaType fileSize status createdAt url\n    width height durationSeconds placeholder processingError\n    thumbnails { width height mimeType url }\n    audio { peaks }\n  }\n"): (typeof documents)["\n  fragment MediaFields on MediaFile {\n    id fileName mimeType mediaType fileSize status createdAt url\n    width height durationSeconds placeholder processingError\n    thumbnails { width height mimeType url }\n    audio { peaks }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Me { me { name usedBytes quotaBytes } }\n"): (typeof documents)["\n  query Me { me { name usedBytes quotaBytes } }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation InitBatch($files: [FileInput!]!) {\n    initBatch(input: { files: $files }) {\n      id\n      uploads {\n        id batchId fileName totalSize chunkSize totalChunks status\n        chunkUrls { ...ChunkURLFields }\n        progress { ...ProgressFields }\n        deduplicated\n        media { ...MediaFields }\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation InitBatch($files: [FileInput!]!) {\n    initBatch(input: { files: $files }) {\n      id\n      uploads {\n        id batchId fileName totalSize chunkSize totalChunks status\n        chunkUrls { ...ChunkURLFields }\n        progress { ...ProgressFields }\n        deduplicated\n        media { ...MediaFields }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation RequestChunkUrl($uploadId: ID!, $chunkIndex: Int!) {\n    requestChunkUrl(uploadId: $uploadId, chunkIndex: $chunkIndex) { ...ChunkURLFields }\n  }\n"): (typeof documents)["\n  mutation RequestChunkUrl($uploadId: ID!, $chunkIndex: Int!) {\n    requestChunkUrl(uploadId: $uploadId, chunkIndex: $chunkIndex) { ...ChunkURLFields }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Retry($uploadId: ID!) {\n    retry(uploadId: $uploadId) { ...ChunkURLFields }\n  }\n"): (typeof documents)["\n  mutation Retry($uploadId: ID!) {\n    retry(uploadId: $uploadId) { ...ChunkURLFields }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Complete($uploadId: ID!) {\n    complete(uploadId: $uploadId) { ...MediaFields }\n  }\n"): (typeof documents)["\n  mutation Complete($uploadId: ID!) {\n    complete(uploadId: $uploadId) { ...MediaFields }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Cancel($uploadId: ID!) {\n    cancel(uploadId: $uploadId) { id status }\n  }\n"): (typeof documents)["\n  mutation Cancel($uploadId: ID!) {\n    cancel(uploadId: $uploadId) { id status }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation DeleteMedia($id: ID!) { deleteMedia(id: $id) }\n"): (typeof documents)["\n  mutation DeleteMedia($id: ID!) { deleteMedia(id: $id) }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Upload($id: ID!) {\n    upload(id: $id) { id fileName totalSize status progress { ...ProgressFields } }\n  }\n"): (typeof documents)["\n  query Upload($id: ID!) {\n    upload(id: $id) { id fileName totalSize status progress { ...ProgressFields } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Media($id: ID!) {\n    node(id: $id) { ... on MediaFile { ...MediaFields } }\n  }\n"): (typeof documents)["\n  query Media($id: ID!) {\n    node(id: $id) { ... on MediaFile { ...MediaFields } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query UserMedia($first: Int!, $after: Cursor, $where: MediaFileWhereInput) {\n    userMedia(first: $first, after: $after, where: $where,\n              orderBy: { field: CREATED_AT, direction: DESC }) {\n      edges { node { ...MediaFields } }\n      pageInfo { hasNextPage endCursor }\n      totalCount\n    }\n  }\n"): (typeof documents)["\n  query UserMedia($first: Int!, $after: Cursor, $where: MediaFileWhereInput) {\n    userMedia(first: $first, after: $after, where: $where,\n              orderBy: { field: CREATED_AT, direction: DESC }) {\n      edges { node { ...MediaFields } }\n      pageInfo { hasNextPage endCursor }\n      totalCount\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription MyUploads { myUploads { ...ProgressFields } }\n"): (typeof documents)["\n  subscription MyUploads { myUploads { ...ProgressFields } }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;