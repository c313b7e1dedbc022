/*
 * tls_hook.h - the TLS verification hook, as the module glue (rlm_rust_shim.c) uses it.
 *
 * The hook wraps OpenSSL's chain verification on an eap module's TLS context and records,
 * on the TLS session's certificate attribute list, digests of the certificate the client
 * presented and of every certificate of the chain OpenSSL verified (include/rlm_rust.h
 * names the attributes). FreeRADIUS copies that list into the request (check-eap-tls,
 * post-auth) and into its session cache, so the check binds to the certificate itself.
 */
#ifndef RLM_RUST_TLS_HOOK_H
#define RLM_RUST_TLS_HOOK_H

#include <freeradius-devel/radiusd.h>

#include "rlm_rust.h"

/* The contexts one module instance hooked; released at detach. */
#define RLM_RUST_MAX_TLS_CONFIGS 8

typedef struct rlm_rust_hooks {
	int slots[RLM_RUST_MAX_TLS_CONFIGS];	/* indices into the process-wide table */
	size_t count;
} rlm_rust_hooks;

/* Registers the captured attributes in the dictionary (idempotent). 0 on success. */
int rlm_rust_hook_register_attributes(CONF_SECTION *module_cs);

/*
 * Hooks every tls-config named in `tls_configs` (space or comma separated) of the eap
 * module instance `eap_instance`, instantiating that module first. On any problem logs
 * a message naming the option and what was missing, releases what it hooked, returns -1.
 */
int rlm_rust_hook_install(CONF_SECTION *module_cs, char const *eap_instance, char const *tls_configs,
			  rlm_rust_hooks *hooks);

/* Drops this instance's references; the last one restores the context's callback. */
void rlm_rust_hook_release(rlm_rust_hooks *hooks);

/* Collects the captured attributes of `request` (see rlm_rust_capture_source). */
void rlm_rust_hook_collect(REQUEST *request, rlm_rust_capture *capture);

#endif /* RLM_RUST_TLS_HOOK_H */
