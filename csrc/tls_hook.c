/*
 * tls_hook.c - capture, in process, the certificate the client proved in the handshake.
 *
 * FreeRADIUS 3.2 hands modules only what it prints about a client certificate, and printed
 * fields do not identify a certificate (two different DNs print alike; intermediates the
 * client sends are never reported). So at instantiate we find the eap module's TLS context
 * and install SSL_CTX_set_cert_verify_callback on it. FreeRADIUS sets only the per-depth
 * callback (SSL_set_verify -> cbtls_verify); ours replaces OpenSSL's call to
 * X509_verify_cert, calls it itself (so cbtls_verify still runs at every depth and decides
 * as before), and on success records digests of the verified chain on the session's
 * certificate attribute list. The client signs the handshake with the key of the depth-0
 * certificate, so those digests describe the certificate whose key it holds.
 *
 * The hook must never outlive this object: each hooked SSL_CTX holds a reference we took,
 * so it exists until our detach, where the last instance using it puts the callback back.
 */
#include <freeradius-devel/radiusd.h>
#include <freeradius-devel/modules.h>
#include <freeradius-devel/modpriv.h>
#include <freeradius-devel/tls.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>

#include "tls_hook.h"

/* Distinct TLS contexts hooked in one process (all instances together). */
#define MAX_HOOKED 16

typedef struct hooked_ctx {
	SSL_CTX *ctx;		/* NULL: free slot */
	unsigned int refs;	/* module instances using it */
	size_t num_tickets;	/* the context's TLS 1.3 ticket count before we set it to 0 */
	char label[128];	/* "eap_dane/tls-common", for logs */
} hooked_ctx_t;

static hooked_ctx_t hooked[MAX_HOOKED];
static pthread_mutex_t hooked_lock = PTHREAD_MUTEX_INITIALIZER;

static DICT_ATTR const *da_cert_sha256;
static DICT_ATTR const *da_cert_sha512;
static DICT_ATTR const *da_spki_sha256;
static DICT_ATTR const *da_spki_sha512;
static DICT_ATTR const *da_chain_length;
static DICT_ATTR const *da_san_dns;

/* ---- attributes ------------------------------------------------------------------------ */

static DICT_ATTR const *register_attribute(CONF_SECTION *cs, char const *name, PW_TYPE type)
{
	ATTR_FLAGS flags;
	DICT_ATTR const *da;

	memset(&flags, 0, sizeof(flags));
	if (dict_addattr(name, -1, 0, type, flags) < 0) {
		cf_log_err_cs(cs, "rlm_rust: cannot register attribute %s: %s", name, fr_strerror());
		return NULL;
	}
	da = dict_attrbyname(name);
	/*
	 *	A dictionary that already defines the name as a wire attribute (number below 256)
	 *	would let a RADIUS client send it: refuse to run rather than trust it.
	 */
	if (!da || (da->vendor != 0) || (da->attr < 256) || (da->type != type)) {
		cf_log_err_cs(cs, "rlm_rust: attribute %s is defined elsewhere as a different attribute; "
			      "it must be the module's own internal attribute", name);
		return NULL;
	}
	return da;
}

int rlm_rust_hook_register_attributes(CONF_SECTION *cs)
{
	da_cert_sha256 = register_attribute(cs, RLM_RUST_ATTR_CERT_SHA256, PW_TYPE_OCTETS);
	da_cert_sha512 = register_attribute(cs, RLM_RUST_ATTR_CERT_SHA512, PW_TYPE_OCTETS);
	da_spki_sha256 = register_attribute(cs, RLM_RUST_ATTR_SPKI_SHA256, PW_TYPE_OCTETS);
	da_spki_sha512 = register_attribute(cs, RLM_RUST_ATTR_SPKI_SHA512, PW_TYPE_OCTETS);
	da_chain_length = register_attribute(cs, RLM_RUST_ATTR_CHAIN_LENGTH, PW_TYPE_INTEGER);
	da_san_dns = register_attribute(cs, RLM_RUST_ATTR_SAN_DNS, PW_TYPE_OCTETS);
	if (!da_cert_sha256 || !da_cert_sha512 || !da_spki_sha256 || !da_spki_sha512 || !da_chain_length ||
	    !da_san_dns) return -1;
	return 0;
}

/* ---- the verification callback --------------------------------------------------------- */

static int add_octets(TALLOC_CTX *ctx, VALUE_PAIR **list, DICT_ATTR const *da, uint8_t const *data, size_t len)
{
	VALUE_PAIR *vp = fr_pair_afrom_da(ctx, da);

	if (!vp) return -1;
	fr_pair_value_memcpy(vp, data, len);
	fr_pair_add(list, vp);
	return 0;
}

static int add_digest(TALLOC_CTX *ctx, VALUE_PAIR **list, DICT_ATTR const *da, EVP_MD const *md,
		      uint8_t const *der, size_t len)
{
	uint8_t out[EVP_MAX_MD_SIZE];
	unsigned int out_len = 0;

	if (EVP_Digest(der, len, out, &out_len, md, NULL) != 1) return -1;
	return add_octets(ctx, list, da, out, out_len);
}

/* SHA-256 and SHA-512 of one certificate's DER and of its SubjectPublicKeyInfo DER. */
static int add_certificate(TALLOC_CTX *ctx, VALUE_PAIR **list, X509 *cert)
{
	unsigned char *der = NULL, *spki = NULL;
	int der_len, spki_len, rcode = -1;

	der_len = i2d_X509(cert, &der);
	spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
	if ((der_len > 0) && (spki_len > 0) &&
	    (add_digest(ctx, list, da_cert_sha256, EVP_sha256(), der, der_len) == 0) &&
	    (add_digest(ctx, list, da_cert_sha512, EVP_sha512(), der, der_len) == 0) &&
	    (add_digest(ctx, list, da_spki_sha256, EVP_sha256(), spki, spki_len) == 0) &&
	    (add_digest(ctx, list, da_spki_sha512, EVP_sha512(), spki, spki_len) == 0)) rcode = 0;
	OPENSSL_free(der);
	OPENSSL_free(spki);
	return rcode;
}

/* The presented certificate's dNSName entries, as bytes (an embedded NUL stays visible). */
static int add_san_dns(TALLOC_CTX *ctx, VALUE_PAIR **list, X509 *leaf)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	int i, n, recorded = 0, rcode = 0;

	if (!names) return 0;
	n = sk_GENERAL_NAME_num(names);
	for (i = 0; (i < n) && (recorded < RLM_RUST_MAX_SAN_DNS); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		int type;
		ASN1_STRING *value = GENERAL_NAME_get0_value(gn, &type);

		if ((type != GEN_DNS) || !value) continue;
		if (add_octets(ctx, list, da_san_dns, ASN1_STRING_get0_data(value), ASN1_STRING_length(value)) < 0) {
			rcode = -1;
			break;
		}
		recorded++;
	}
	GENERAL_NAMES_free(names);
	return rcode;
}

static void forget_capture(VALUE_PAIR **list)
{
	fr_pair_delete_by_da(list, da_cert_sha256);
	fr_pair_delete_by_da(list, da_cert_sha512);
	fr_pair_delete_by_da(list, da_spki_sha256);
	fr_pair_delete_by_da(list, da_spki_sha512);
	fr_pair_delete_by_da(list, da_chain_length);
	fr_pair_delete_by_da(list, da_san_dns);
}

static void capture(X509_STORE_CTX *store_ctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	VALUE_PAIR **certs;
	TALLOC_CTX *talloc_ctx;
	REQUEST *request;
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(store_ctx);
	int i, n;
	char length[16];
	VALUE_PAIR *vp;

	if (!ssl || !chain) return;
	certs = SSL_get_ex_data(ssl, fr_tls_ex_index_certs);
	talloc_ctx = SSL_get_ex_data(ssl, FR_TLS_EX_INDEX_TALLOC);
	request = SSL_get_ex_data(ssl, FR_TLS_EX_INDEX_REQUEST);
	if (!certs || !talloc_ctx) return;	/* not an EAP session: nothing to bind, the check rejects */

	/* A new handshake on the session replaces whatever an earlier one recorded. */
	forget_capture(certs);
	n = sk_X509_num(chain);
	if ((n < 1) || (n > RLM_RUST_MAX_CHAIN)) {
		if (request) RWDEBUG("rlm_rust: verified chain has %d certificates (at most %d are recorded): "
				     "nothing captured, the check will reject", n, RLM_RUST_MAX_CHAIN);
		return;
	}
	for (i = 0; i < n; i++) {
		if (add_certificate(talloc_ctx, certs, sk_X509_value(chain, i)) < 0) goto fail;
	}
	if (add_san_dns(talloc_ctx, certs, sk_X509_value(chain, 0)) < 0) goto fail;
	vp = fr_pair_afrom_da(talloc_ctx, da_chain_length);
	snprintf(length, sizeof(length), "%d", n);
	if (!vp || (fr_pair_value_from_str(vp, length, -1) < 0)) {
		talloc_free(vp);
		goto fail;
	}
	fr_pair_add(certs, vp);
	if (request) {
		vp = fr_pair_find_by_da(*certs, da_cert_sha256, TAG_ANY);
		if (vp && (vp->vp_length == 32)) {
			char hex[65];

			fr_bin2hex(hex, vp->vp_octets, 32);
			RDEBUG2("rlm_rust: captured the presented certificate (sha256 %s) and a verified chain of %d",
				hex, n);
		}
	}
	return;

fail:
	/* Half a capture must not look like a whole one. */
	forget_capture(certs);
	if (request) REDEBUG("rlm_rust: out of memory capturing the certificate: the check will reject");
}

static int verify_and_capture(X509_STORE_CTX *store_ctx, void *arg)
{
	int ok;

	(void) arg;
	ok = X509_verify_cert(store_ctx);
	if (ok == 1) capture(store_ctx);
	return ok;
}

/* ---- installing and removing ----------------------------------------------------------- */

static int hook_context(SSL_CTX *ctx, char const *label)
{
	int i, free_slot = -1;

	pthread_mutex_lock(&hooked_lock);
	for (i = 0; i < MAX_HOOKED; i++) {
		if (hooked[i].ctx == ctx) {
			hooked[i].refs++;
			pthread_mutex_unlock(&hooked_lock);
			return i;
		}
		if (!hooked[i].ctx && (free_slot < 0)) free_slot = i;
	}
	if (free_slot >= 0) {
		hooked_ctx_t *h = &hooked[free_slot];

		SSL_CTX_up_ref(ctx);
		h->ctx = ctx;
		h->refs = 1;
		strlcpy(h->label, label, sizeof(h->label));
		SSL_CTX_set_cert_verify_callback(ctx, verify_and_capture, NULL);
		INFO("rlm_rust: verification hook installed on %s", label);
		/*
		 *	FreeRADIUS 3.2 restores the attributes it cached with a session when a TLS 1.2
		 *	session is resumed, but not when a TLS 1.3 one is (that success path skips the
		 *	restore). A resumed TLS 1.3 session would reach the check with nothing to bind
		 *	to, so TLS 1.3 clients are not offered tickets: they do a full handshake, which
		 *	the hook captures. TLS 1.2 resumption is unaffected.
		 */
		h->num_tickets = SSL_CTX_get_num_tickets(ctx);
		if (h->num_tickets > 0) {
			SSL_CTX_set_num_tickets(ctx, 0);
			INFO("rlm_rust: TLS 1.3 session tickets disabled on %s (a resumed TLS 1.3 session "
			     "carries no certificate to check)", label);
		}
	}
	pthread_mutex_unlock(&hooked_lock);
	return free_slot;
}

void rlm_rust_hook_release(rlm_rust_hooks *hooks)
{
	size_t i;

	pthread_mutex_lock(&hooked_lock);
	for (i = 0; i < hooks->count; i++) {
		hooked_ctx_t *h = &hooked[hooks->slots[i]];

		if (!h->ctx || (--h->refs > 0)) continue;
		SSL_CTX_set_cert_verify_callback(h->ctx, NULL, NULL);
		if (h->num_tickets > 0) SSL_CTX_set_num_tickets(h->ctx, h->num_tickets);
		SSL_CTX_free(h->ctx);
		INFO("rlm_rust: verification hook removed from %s", h->label);
		h->ctx = NULL;
	}
	pthread_mutex_unlock(&hooked_lock);
	hooks->count = 0;
}

/* The tls-config named by the `tls = ...` of the eap module's EAP-TLS (`tls { }`) section. */
static char const *eap_tls_config_name(CONF_SECTION *eap_cs)
{
	CONF_SECTION *tls = cf_section_sub_find(eap_cs, "tls");
	CONF_PAIR *cp = tls ? cf_pair_find(tls, "tls") : NULL;

	return cp ? cf_pair_value(cp) : NULL;
}

static int hook_one(CONF_SECTION *cs, CONF_SECTION *eap_cs, char const *eap_instance, char const *name,
		    rlm_rust_hooks *hooks)
{
	CONF_SECTION *tls_cs = cf_section_sub_find_name2(eap_cs, "tls-config", name);
	CONF_PAIR *realm_dir, *key_file;
	fr_tls_server_conf_t *conf;
	char label[128];
	int slot;

	if (!tls_cs) {
		cf_log_err_cs(cs, "rlm_rust: tls_config = \"%s\": eap %s has no \"tls-config %s { }\" section",
			      name, eap_instance, name);
		return -1;
	}
	realm_dir = cf_pair_find(tls_cs, "realm_dir");
	if (realm_dir && cf_pair_value(realm_dir) && *cf_pair_value(realm_dir)) {
		cf_log_err_cs(cs, "rlm_rust: tls_config = \"%s\": it sets realm_dir, whose per-realm TLS contexts "
			      "the verification hook cannot cover; remove realm_dir from tls-config %s", name, name);
		return -1;
	}
	conf = cf_data_find(tls_cs, "tls-conf");
	if (!conf) {
		cf_log_err_cs(cs, "rlm_rust: tls_config = \"%s\": eap %s has no TLS context for it "
			      "(no EAP method of eap %s uses tls-config %s)", name, eap_instance, eap_instance, name);
		return -1;
	}
	/*
	 *	The struct comes from the headers we were built with. Its string fields hold what
	 *	the section says, so a mismatch means the headers do not describe this server.
	 */
	key_file = cf_pair_find(tls_cs, "private_key_file");
	if (!conf->ctx || (key_file && cf_pair_value(key_file) &&
			   (!conf->private_key_file || strcmp(conf->private_key_file, cf_pair_value(key_file)) != 0))) {
		cf_log_err_cs(cs, "rlm_rust: tls_config = \"%s\": no TLS context found in eap %s "
			      "(is the module built against this FreeRADIUS version's headers?)", name, eap_instance);
		return -1;
	}
	if (hooks->count == RLM_RUST_MAX_TLS_CONFIGS) {
		cf_log_err_cs(cs, "rlm_rust: tls_config: more than %d sections", RLM_RUST_MAX_TLS_CONFIGS);
		return -1;
	}
	snprintf(label, sizeof(label), "%s/%s", eap_instance, name);
	slot = hook_context(conf->ctx, label);
	if (slot < 0) {
		cf_log_err_cs(cs, "rlm_rust: tls_config = \"%s\": more than %d TLS contexts hooked in this server",
			      name, MAX_HOOKED);
		return -1;
	}
	hooks->slots[hooks->count++] = slot;
	return 0;
}

int rlm_rust_hook_install(CONF_SECTION *cs, char const *eap_instance, char const *tls_configs,
			  rlm_rust_hooks *hooks)
{
	CONF_SECTION *modules = cf_section_find("modules");
	CONF_SECTION *eap_cs = NULL;
	char const *used;
	char names[256];
	char *name, *save = NULL;
	bool covers_eap_tls = false;

	hooks->count = 0;
	if (!eap_instance || !*eap_instance) {
		cf_log_err_cs(cs, "rlm_rust: eap_instance is empty: name the eap module whose EAP-TLS this "
			      "module checks");
		return -1;
	}
	if (modules) eap_cs = cf_section_sub_find_name2(modules, "eap", eap_instance);
	if (modules && !eap_cs && (strcmp(eap_instance, "eap") == 0)) {
		eap_cs = cf_section_sub_find(modules, "eap");
		if (eap_cs && cf_section_name2(eap_cs)) eap_cs = NULL;
	}
	if (!eap_cs) {
		cf_log_err_cs(cs, "rlm_rust: eap_instance = \"%s\": no \"eap %s { }\" module is configured",
			      eap_instance, eap_instance);
		return -1;
	}
	if (!module_instantiate(modules, eap_instance)) {
		cf_log_err_cs(cs, "rlm_rust: eap_instance = \"%s\": the eap module failed to start", eap_instance);
		return -1;
	}
	used = eap_tls_config_name(eap_cs);
	if (!used) {
		cf_log_err_cs(cs, "rlm_rust: eap_instance = \"%s\": it has no EAP-TLS section naming a "
			      "tls-config (tls { tls = ... })", eap_instance);
		return -1;
	}
	if (!tls_configs || (strlen(tls_configs) >= sizeof(names))) {
		cf_log_err_cs(cs, "rlm_rust: tls_config is empty or too long");
		return -1;
	}
	strlcpy(names, tls_configs, sizeof(names));
	for (name = strtok_r(names, " ,\t", &save); name; name = strtok_r(NULL, " ,\t", &save)) {
		if (hook_one(cs, eap_cs, eap_instance, name, hooks) < 0) goto fail;
		if (strcmp(name, used) == 0) covers_eap_tls = true;
	}
	if (hooks->count == 0) {
		cf_log_err_cs(cs, "rlm_rust: tls_config names no tls-config section");
		return -1;
	}
	if (!covers_eap_tls) {
		cf_log_err_cs(cs, "rlm_rust: tls_config = \"%s\": eap %s's EAP-TLS uses tls-config %s, which "
			      "tls_config does not list", tls_configs, eap_instance, used);
		goto fail;
	}
	return 0;

fail:
	rlm_rust_hook_release(hooks);
	return -1;
}

/* ---- reading the capture back ---------------------------------------------------------- */

static bool holds_capture(VALUE_PAIR *vps)
{
	return fr_pair_find_by_da(vps, da_cert_sha256, TAG_ANY) != NULL;
}

static void collect_values(VALUE_PAIR *vps, DICT_ATTR const *da, rlm_rust_values *out)
{
	vp_cursor_t cursor;
	VALUE_PAIR *vp;

	for (vp = fr_cursor_init(&cursor, &vps); (vp = fr_cursor_next_by_da(&cursor, da, TAG_ANY)) != NULL;) {
		if (out->count < RLM_RUST_MAX_SAN_DNS) {
			out->values[out->count].ptr = (char const *) vp->vp_octets;
			out->values[out->count].len = vp->vp_length;
		}
		out->count++;
	}
}

void rlm_rust_hook_collect(REQUEST *request, rlm_rust_capture *c)
{
	VALUE_PAIR *vps = NULL;
	VALUE_PAIR *vp;

	memset(c, 0, sizeof(*c));
	c->chain_length = -1;
	c->source = RLM_RUST_CAPTURE_NONE;
	if (!da_cert_sha256) return;

	/*
	 *	A full handshake puts the capture in the request list (FreeRADIUS copies the
	 *	session's certificate list there). A TLS session resumed from the cache has no
	 *	handshake to capture: FreeRADIUS restores the attributes it cached with the session
	 *	into the reply list, which the check-eap-tls virtual server sees as its parent's.
	 */
	if (holds_capture(request->packet->vps)) {
		vps = request->packet->vps;
		c->source = RLM_RUST_CAPTURE_HANDSHAKE;
	} else if (request->reply && holds_capture(request->reply->vps)) {
		vps = request->reply->vps;
		c->source = RLM_RUST_CAPTURE_RESUMED;
	} else if (request->parent && request->parent->reply && holds_capture(request->parent->reply->vps)) {
		vps = request->parent->reply->vps;
		c->source = RLM_RUST_CAPTURE_RESUMED;
	} else {
		return;
	}
	collect_values(vps, da_cert_sha256, &c->cert_sha256);
	collect_values(vps, da_cert_sha512, &c->cert_sha512);
	collect_values(vps, da_spki_sha256, &c->spki_sha256);
	collect_values(vps, da_spki_sha512, &c->spki_sha512);
	collect_values(vps, da_san_dns, &c->san_dns);
	vp = fr_pair_find_by_da(vps, da_chain_length, TAG_ANY);
	if (vp) c->chain_length = vp->vp_integer;
}
