/* serve.h — the wire format between loomd and its inference workers
 * (loom-worker --serve), and a small client.  docs/inference.md is the
 * contract; this is its code, shared by both sides.
 *
 * A message is a 48-byte little-endian header (magic "LSRV", version, op,
 * flags, status, request id, ndim, dims[3], passes, payload length) and a
 * payload: nothing (ping), the model's info JSON (info reply), f32 windows
 * [B, L, C] (predict request), f32 outputs then, with the UNCERTAINTY flag,
 * f32 spreads of the same shape (predict reply), a file's path and line
 * range (windows request: from_line, to_line, stride as little-endian
 * int64, then the path's bytes), the windows read from it, f32 [B, L, C],
 * then their description as JSON (windows reply), or a UTF-8 message (any
 * reply with a status).  The decoders check every field against the
 * message's size and the limits below before anything is read. */
#ifndef LOOM_HOST_SERVE_H
#define LOOM_HOST_SERVE_H

#include <stddef.h>
#include <stdint.h>

#define LOOMI_SERVE_MAGIC 0x5652534Cu /* "LSRV" in memory order */
#define LOOMI_SERVE_VERSION 1u
#define LOOMI_SERVE_HEADER 48u

/* Limits a decoder holds a message to. */
#define LOOMI_SERVE_MAX_WINDOWS 65536u
#define LOOMI_SERVE_MAX_DIM 1048576u         /* context, channels */
#define LOOMI_SERVE_MAX_PAYLOAD (64u << 20)  /* bytes */
#define LOOMI_SERVE_MAX_PASSES 1024u
#define LOOMI_SERVE_MAX_PATH 4096u           /* a windows request's path, bytes */
#define LOOMI_SERVE_RANGE_BYTES 24u          /* from_line, to_line, stride */

/* Ops. */
enum {
	LOOMI_SERVE_PING = 1,
	LOOMI_SERVE_INFO = 2,
	LOOMI_SERVE_PREDICT = 3,
	LOOMI_SERVE_WINDOWS = 4,  /* the windows of a file, as the model reads it */
};

/* Flags. */
#define LOOMI_SERVE_UNCERTAINTY 0x1u
#define LOOMI_SERVE_FLAGS_KNOWN 0x1u

/* A decoded message.  payload points into the buffer decoded. */
typedef struct loomi_serve_msg {
	uint16_t version;
	uint16_t op;
	uint32_t flags;
	uint32_t status;          /* 0, or a LOOM_E* code (replies) */
	uint64_t id;
	uint32_t ndim;
	uint32_t dims[3];
	uint32_t passes;
	const void *payload;
	size_t length;            /* payload bytes */
} loomi_serve_msg;

/* Encoders: a new buffer (free it) of *len bytes.  0 or LOOM_ERANGE (over
 * the limits) / LOOM_EINVAL (dims that do not fit the payload). */

/* A request: ping and info carry nothing; predict carries windows
 * [batch, context, channels] (a windows request has its own encoder). */
int loomi_serve_encode_request(uint16_t op, uint64_t id, uint32_t flags, uint32_t passes,
                               const float *windows, uint32_t batch, uint32_t context,
                               uint32_t channels, void **buf, size_t *len);
/* A predict reply: outputs of shape dims[ndim], then spread (the same
 * count; NULL for none, and the UNCERTAINTY flag clear). */
int loomi_serve_encode_prediction(uint64_t id, uint32_t ndim, const uint32_t *dims,
                                  const float *output, const float *spread, uint32_t passes,
                                  void **buf, size_t *len);
/* A windows request: the file at path (1 to LOOMI_SERVE_MAX_PATH bytes, no
 * NUL), the lines from_line to to_line (≥ 0; 0: no bound), windows
 * starting every stride rows (≥ 1). */
int loomi_serve_encode_windows_request(uint64_t id, const char *path, int64_t from_line,
                                       int64_t to_line, int64_t stride, void **buf, size_t *len);
/* A windows reply: windows [batch, context, channels] (batch ≥ 1), then
 * meta_json (not empty). */
int loomi_serve_encode_windows(uint64_t id, uint32_t batch, uint32_t context, uint32_t channels,
                               const float *windows, const char *meta_json, void **buf,
                               size_t *len);
/* A windows request's fields, from a decoded message (the path is not
 * NUL-terminated in the message: *path is a new string; free it). */
void loomi_serve_windows_args(const loomi_serve_msg *m, char **path, int64_t *from_line,
                              int64_t *to_line, int64_t *stride);
/* A reply carrying text: status 0 with the info JSON (info) or nothing
 * (ping), or a status with its message. */
int loomi_serve_encode_text(uint16_t op, uint64_t id, uint32_t status, const char *text,
                            void **buf, size_t *len);

/* Decoders: 0 with *m filled, or a LOOM_E* code (LOOM_EPROTO for a
 * malformed message, LOOM_EINVAL for a non-finite input, LOOM_ERANGE over a
 * limit) with why[why_len] saying what is wrong.  m->id is filled as soon as
 * the header could be read, so an error reply can carry it. */
int loomi_serve_decode_request(const void *buf, size_t len, loomi_serve_msg *m, char *why,
                               size_t why_len);
int loomi_serve_decode_reply(const void *buf, size_t len, loomi_serve_msg *m, char *why,
                             size_t why_len);

/* ------------------------------------------------------------------ client */

typedef struct loomi_serve_client loomi_serve_client;

/* A predict answer. */
typedef struct loomi_serve_result {
	uint32_t ndim;
	uint32_t dims[3];
	uint32_t passes;          /* MC-dropout passes used, 0 otherwise */
	float *output;            /* prod(dims) values (free with result_free) */
	float *spread;            /* the same count, or NULL */
} loomi_serve_result;

/* Each returns 0 or a LOOM_E* code with *err set (free it): the worker's
 * status and message, LOOM_ETIMEDOUT (no answer within timeout_ms),
 * LOOM_EUNREACHABLE, LOOM_EPROTO (a malformed reply).  One request at a
 * time per client. */
int loomi_serve_client_open(const char *url, int timeout_ms, loomi_serve_client **c, char **err);
int loomi_serve_client_ping(loomi_serve_client *c, char **err);
int loomi_serve_client_info(loomi_serve_client *c, char **info_json, char **err);
int loomi_serve_client_predict(loomi_serve_client *c, const float *windows, uint32_t batch,
                               uint32_t context, uint32_t channels, uint32_t flags,
                               uint32_t passes, loomi_serve_result *res, char **err);
/* The windows of a file as the worker's model reads them. */
typedef struct loomi_serve_windows {
	uint32_t batch, context, channels;
	float *windows;           /* [batch, context, channels] (free with windows_free) */
	char *meta_json;          /* {"windows": [{"first_line", "last_line", "time"}…]} */
} loomi_serve_windows;

int loomi_serve_client_windows(loomi_serve_client *c, const char *path, int64_t from_line,
                               int64_t to_line, int64_t stride, loomi_serve_windows *res,
                               char **err);
void loomi_serve_windows_free(loomi_serve_windows *res);
/* Send raw bytes and receive the raw reply (tests: malformed requests). */
int loomi_serve_client_call(loomi_serve_client *c, const void *req, size_t len, void **reply,
                            size_t *reply_len, char **err);
void loomi_serve_result_free(loomi_serve_result *res);
void loomi_serve_client_close(loomi_serve_client *c);

#endif /* LOOM_HOST_SERVE_H */
