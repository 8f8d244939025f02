// spool's GraphQL operations as plain async functions. A failure becomes a
// ServiceError carrying spool's extensions.code (or NETWORK when spool was
// not reached), the one form the rest of the uploader handles.
import type { AnyVariables, Client, CombinedError, TypedDocumentNode } from "@urql/core";
import {
  CancelMutation,
  CompleteMutation,
  DeleteMediaMutation,
  InitBatchMutation,
  MediaQuery,
  MeQuery,
  RequestChunkUrlMutation,
  RetryMutation,
  UploadQuery,
  UserMediaQuery,
  type ChunkURL,
  type FileInput,
  type MediaFile,
  type MediaType,
  type MediaPage,
  type UploadSession,
  type User,
} from "./operations";
import { askedWait, ServiceError, type UploadApi } from "./upload";

export function toServiceError(error: CombinedError): ServiceError {
  const first = error.graphQLErrors[0];
  if (first) {
    const code = first.extensions?.code;
    return new ServiceError(first.message, typeof code === "string" ? code : "INTERNAL", 0, askedWait(first.extensions?.retryAfter));
  }
  return new ServiceError("spool could not be reached; check your connection", "NETWORK");
}

export class Api implements UploadApi<MediaFile> {
  constructor(private readonly client: Client) {}

  private async run<Data, Vars extends AnyVariables>(
    kind: "query" | "mutation",
    doc: TypedDocumentNode<Data, Vars>,
    variables: Vars,
  ): Promise<Data> {
    const result =
      kind === "query"
        ? await this.client.query(doc, variables).toPromise()
        : await this.client.mutation(doc, variables).toPromise();
    if (result.error) throw toServiceError(result.error);
    if (!result.data) throw new ServiceError("spool sent an empty answer", "INTERNAL");
    return result.data;
  }

  async me(): Promise<User> {
    return (await this.run("query", MeQuery, {})).me;
  }

  async initBatch(files: FileInput[]): Promise<{ id: string; uploads: UploadSession[] }> {
    return (await this.run("mutation", InitBatchMutation, { files })).initBatch;
  }

  async requestChunkUrl(uploadId: string, chunkIndex: number): Promise<ChunkURL> {
    return (await this.run("mutation", RequestChunkUrlMutation, { uploadId, chunkIndex })).requestChunkUrl;
  }

  async retry(uploadId: string): Promise<ChunkURL[]> {
    return (await this.run("mutation", RetryMutation, { uploadId })).retry;
  }

  async complete(uploadId: string): Promise<MediaFile> {
    return (await this.run("mutation", CompleteMutation, { uploadId })).complete;
  }

  async cancel(uploadId: string): Promise<void> {
    await this.run("mutation", CancelMutation, { uploadId });
  }

  async deleteMedia(id: string): Promise<void> {
    await this.run("mutation", DeleteMediaMutation, { id });
  }

  async upload(id: string) {
    return (await this.run("query", UploadQuery, { id })).upload;
  }

  async media(id: string): Promise<MediaFile | null> {
    return (await this.run("query", MediaQuery, { id })).node;
  }

  async userMedia(first: number, after: string | null, mediaType: MediaType | null): Promise<MediaPage> {
    const where = mediaType ? { mediaType } : null;
    return (await this.run("query", UserMediaQuery, { first, after, where })).userMedia;
  }
}
