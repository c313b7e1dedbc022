/*
 * rlm_rust.h - the one contract between the C shim (csrc/) and the Rust core.
 *
 * bindgen generates the Rust side of every type here, so C and Rust cannot disagree on a
 * layout. Only plain data crosses: byte strings with explicit lengths (never assumed to be
 * NUL-terminated), counts, and function pointers the C side owns. Rust never calls a
 * FreeRADIUS symbol directly; it calls back through rlm_rust_host / rlm_rust_sink, which
 * keeps the Rust library linkable (tests, CLI) without radiusd.
 */
#ifndef RLM_RUST_H
#define RLM_RUST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The attributes the TLS verification hook (csrc/tls_hook.c) records on the session's
 * certificate list once OpenSSL has verified the client's chain. Each digest attribute
 * holds one value per certificate of the verified chain, the presented certificate
 * (depth 0) first and the trust anchor last; the SAN attribute holds the presented
 * certificate's dNSName entries, byte for byte. All are internal attributes (numbered
 * above 255), so no RADIUS client can send them.
 */
#define RLM_RUST_ATTR_CERT_SHA256	"Rlm-Rust-Cert-SHA256"	/* SHA-256 of the certificate DER */
#define RLM_RUST_ATTR_CERT_SHA512	"Rlm-Rust-Cert-SHA512"	/* SHA-512 of the certificate DER */
#define RLM_RUST_ATTR_SPKI_SHA256	"Rlm-Rust-SPKI-SHA256"	/* SHA-256 of its SubjectPublicKeyInfo DER */
#define RLM_RUST_ATTR_SPKI_SHA512	"Rlm-Rust-SPKI-SHA512"	/* SHA-512 of its SubjectPublicKeyInfo DER */
#define RLM_RUST_ATTR_CHAIN_LENGTH	"Rlm-Rust-Chain-Length"	/* certificates recorded (integer) */
#define RLM_RUST_ATTR_SAN_DNS		"Rlm-Rust-Cert-SAN-DNS"	/* presented certificate's dNSNames */

/* Most certificates of one verified chain the hook records (a longer chain records none). */
#define RLM_RUST_MAX_CHAIN 16
/* Most dNSName entries of the presented certificate the hook records. */
#define RLM_RUST_MAX_SAN_DNS 32

/* A borrowed byte string. ptr may be NULL when len is 0 (attribute absent). */
typedef struct rlm_rust_str {
	char const *ptr;
	size_t len;
} rlm_rust_str;

/* Log levels the host understands (mapped to FreeRADIUS L_ERR/L_WARN/L_INFO/L_DBG). */
typedef enum rlm_rust_log_level {
	RLM_RUST_LOG_ERROR = 1,
	RLM_RUST_LOG_WARN = 2,
	RLM_RUST_LOG_INFO = 3,
	RLM_RUST_LOG_DEBUG = 4,
} rlm_rust_log_level;

/* Services radiusd offers the core. Valid for the whole process lifetime. */
typedef struct rlm_rust_host {
	/* msg is NUL-terminated; the host copies it. */
	void (*log)(rlm_rust_log_level level, char const *msg);
} rlm_rust_host;

/* One `key = value` of the instance's section, as radiusd parsed and expanded it. */
typedef struct rlm_rust_pair {
	char const *key;
	char const *value;
} rlm_rust_pair;

/*
 * Instance configuration: the section's pairs, uninterpreted. Rust (src/config.rs) is the
 * one place that knows the options, so radiusd and the operator CLI read them alike.
 */
typedef struct rlm_rust_config {
	char const *instance_name;	/* "rust", "guests", ... */
	rlm_rust_pair const *pairs;
	size_t pair_count;
} rlm_rust_config;

/* Where the captured attributes of a request were found. */
typedef enum rlm_rust_capture_source {
	RLM_RUST_CAPTURE_NONE = 0,	/* nowhere: no hook ran for this session */
	RLM_RUST_CAPTURE_HANDSHAKE = 1,	/* the request list: this conversation's full handshake */
	RLM_RUST_CAPTURE_RESUMED = 2,	/* a reply list: restored from the TLS session cache */
} rlm_rust_capture_source;

/* Every value of one captured attribute, in list order. */
typedef struct rlm_rust_values {
	rlm_rust_str values[RLM_RUST_MAX_SAN_DNS];
	size_t count;			/* values found; above the array size means "too many" */
} rlm_rust_values;

/* The captured attributes, uninterpreted: Rust checks lengths and counts. */
typedef struct rlm_rust_capture {
	rlm_rust_capture_source source;
	rlm_rust_values cert_sha256;
	rlm_rust_values cert_sha512;
	rlm_rust_values spki_sha256;
	rlm_rust_values spki_sha512;
	rlm_rust_values san_dns;
	int64_t chain_length;		/* -1 when absent */
} rlm_rust_capture;

/* Where in the conversation the check runs (both are usual: see raddb/sites-available). */
typedef enum rlm_rust_stage {
	RLM_RUST_STAGE_TLS_CHECK = 0,	/* the check-eap-tls virtual server (a child request) */
	RLM_RUST_STAGE_POST_AUTH = 1,	/* post-auth of the server the NAS talks to */
} rlm_rust_stage;

/* The attributes of one request that the check reads (absent attribute: len 0). */
typedef struct rlm_rust_request {
	rlm_rust_str user_name;
	rlm_rust_str called_station_id;
	int wants_cui;			/* the NAS sent Chargeable-User-Identity (RFC 4372) */
	rlm_rust_stage stage;
	rlm_rust_capture const *capture;
} rlm_rust_request;

/* Where one request's verdict side effects go (ctx is the REQUEST). Strings are
 * NUL-terminated and copied by the host. */
typedef struct rlm_rust_sink {
	void *ctx;
	/* Add attr := value to the reply (accept only). Returns 0 on success. */
	int (*add_pair)(void *ctx, char const *attr, char const *value);
	/* A reject: the reason becomes Module-Failure-Message (and the log); reply_message,
	 * when not empty, the Reply-Message the NAS and the device see. */
	void (*set_reason)(void *ctx, char const *reason, char const *reply_message);
	/* A request-scoped log line (the one-line decision record). */
	void (*log)(void *ctx, rlm_rust_log_level level, char const *msg);
} rlm_rust_sink;

typedef enum rlm_rust_verdict {
	RLM_RUST_ACCEPT = 0,	/* -> RLM_MODULE_UPDATED when reply pairs were added, else OK */
	RLM_RUST_REJECT = 1,	/* -> RLM_MODULE_REJECT */
	RLM_RUST_FAIL = 2,	/* internal error (caught panic, bad handle) -> RLM_MODULE_FAIL */
} rlm_rust_verdict;

/* Opaque per-instance state owned by Rust. */
typedef struct rlm_rust_instance rlm_rust_instance;

/* Called once per process before any instance; installs the log bridge. Returns 0 on success. */
int rlm_rust_init(rlm_rust_host const *host);

/* Creates an instance (starts its background thread). NULL on failure (already logged). */
rlm_rust_instance *rlm_rust_instantiate(rlm_rust_config const *config);

/* Decides one request. Never blocks on I/O; reads only an immutable snapshot. */
rlm_rust_verdict rlm_rust_check(rlm_rust_instance const *inst, rlm_rust_request const *request,
				rlm_rust_sink const *sink);

/*
 * A name seen in an EAP identity, before its handshake (the outer server's authorize):
 * lets the sync look up a name the policy admits through its domain. Never blocks and
 * decides nothing. Returns 1 when the sync was told, 0 otherwise.
 */
int rlm_rust_discover(rlm_rust_instance const *inst, rlm_rust_str const *user_name);

/* Stops the background thread and frees the instance. NULL is ignored. */
void rlm_rust_detach(rlm_rust_instance *inst);

#ifdef __cplusplus
}
#endif

#endif /* RLM_RUST_H */
