/*
 * rlm_rust_shim.c - the module glue: the C that must come from FreeRADIUS' own headers.
 *
 * It owns the module_t (whose magic number has to match the running server), the
 * CONF_PARSER table, and the pair/log calls that are macros; tls_hook.c owns the TLS
 * verification hook. Everything else happens in Rust behind include/rlm_rust.h. This file
 * holds no policy: it copies attributes in, maps the verdict out, and (in post-auth) makes
 * a reject a real EAP-Failure.
 */
#include <freeradius-devel/build.h>
#include <freeradius-devel/radiusd.h>
#include <freeradius-devel/modules.h>

#include "rlm_rust.h"
#include "tls_hook.h"

/* MS-MPPE-Send-Key / -Recv-Key (vendor Microsoft, 311). */
#define VENDOR_MICROSOFT 311
#define MS_MPPE_SEND_KEY 16
#define MS_MPPE_RECV_KEY 17

#define EAP_CODE_SUCCESS 3
#define EAP_CODE_FAILURE 4

typedef struct rlm_rust_t {
	char const *name;
	bool eap_failure_on_reject;
	char const *eap_instance;
	char const *tls_config;
	rlm_rust_hooks hooks;
	rlm_rust_instance *core;
} rlm_rust_t;

static const CONF_PARSER module_config[] = {
	/* Only what the shim itself acts on; every other option is read by src/config.rs. */
	{ "eap_failure_on_reject", FR_CONF_OFFSET(PW_TYPE_BOOLEAN, rlm_rust_t, eap_failure_on_reject), "yes" },
	{ "eap_instance", FR_CONF_OFFSET(PW_TYPE_STRING, rlm_rust_t, eap_instance), "eap_dane" },
	{ "tls_config", FR_CONF_OFFSET(PW_TYPE_STRING, rlm_rust_t, tls_config), "tls-common" },
	CONF_PARSER_TERMINATOR
};

static void host_log(rlm_rust_log_level level, char const *msg)
{
	switch (level) {
	case RLM_RUST_LOG_ERROR: radlog(L_ERR, "%s", msg); break;
	case RLM_RUST_LOG_WARN: radlog(L_WARN, "%s", msg); break;
	case RLM_RUST_LOG_INFO: radlog(L_INFO, "%s", msg); break;
	default: DEBUG("%s", msg); break;
	}
}

static const rlm_rust_host host = { .log = host_log };

/* Most pairs a rust { } section may hold; the Rust side reports unknown ones by name. */
#define MAX_PAIRS 64

static int mod_bootstrap(CONF_SECTION *conf, void *instance)
{
	(void) instance;
	return rlm_rust_hook_register_attributes(conf);
}

static int mod_instantiate(CONF_SECTION *conf, void *instance)
{
	rlm_rust_t *inst = instance;
	rlm_rust_config config;
	rlm_rust_pair pairs[MAX_PAIRS];
	size_t n = 0;
	CONF_ITEM *ci;

	inst->name = cf_section_name2(conf);
	if (!inst->name) inst->name = cf_section_name1(conf);

	if (rlm_rust_init(&host) != 0) {
		cf_log_err_cs(conf, "rlm_rust: failed to initialise the Rust core");
		return -1;
	}

	for (ci = cf_item_find_next(conf, NULL); ci; ci = cf_item_find_next(conf, ci)) {
		CONF_PAIR *cp;

		if (!cf_item_is_pair(ci)) continue;
		if (n == MAX_PAIRS) {
			cf_log_err_cs(conf, "rlm_rust: more than %d options", MAX_PAIRS);
			return -1;
		}
		cp = cf_item_to_pair(ci);
		pairs[n].key = cf_pair_attr(cp);
		pairs[n].value = cf_pair_value(cp) ? cf_pair_value(cp) : "";
		n++;
	}
	config.instance_name = inst->name;
	config.pairs = pairs;
	config.pair_count = n;

	/*
	 *	Without the hook the check has nothing to bind to, and there is no fallback:
	 *	refuse to start.
	 */
	if (rlm_rust_hook_install(conf, inst->eap_instance, inst->tls_config, &inst->hooks) < 0) return -1;

	inst->core = rlm_rust_instantiate(&config);
	if (!inst->core) {
		rlm_rust_hook_release(&inst->hooks);
		cf_log_err_cs(conf, "rlm_rust: instance %s failed to start (see the log above)", inst->name);
		return -1;
	}
	return 0;
}

static int mod_detach(void *instance)
{
	rlm_rust_t *inst = instance;

	rlm_rust_detach(inst->core);
	inst->core = NULL;
	rlm_rust_hook_release(&inst->hooks);
	return 0;
}

/* ---- request <-> rlm_rust_request ------------------------------------------------------ */

static rlm_rust_str attr_str(VALUE_PAIR *vps, unsigned int attr)
{
	rlm_rust_str s = { NULL, 0 };
	VALUE_PAIR *vp = fr_pair_find_by_num(vps, attr, 0, TAG_ANY);

	if (vp && (vp->da->type == PW_TYPE_STRING)) {
		s.ptr = vp->vp_strvalue;
		s.len = vp->vp_length;
	}
	return s;
}

/* The sink's context: the request, and whether the verdict added reply attributes. */
typedef struct sink_ctx {
	REQUEST *request;
	char const *module;	/* the instance name, as REDEBUG prefixes it */
	bool added;
} sink_ctx;

static int sink_add_pair(void *ctx, char const *attr, char const *value)
{
	sink_ctx *sc = ctx;
	REQUEST *request = sc->request;

	if (!pair_make_reply(attr, value, T_OP_SET)) {
		REDEBUG("rust: cannot add reply attribute %s: %s", attr, fr_strerror());
		return -1;
	}
	sc->added = true;
	return 0;
}

static void sink_set_reason(void *ctx, char const *reason, char const *reply_message)
{
	sink_ctx const *sc = ctx;
	REQUEST *request = sc->request;
	REQUEST *outer = request;

	REDEBUG("%s", reason);	/* also sets Module-Failure-Message */

	/*
	 *	In the check-eap-tls virtual server the request is a child whose lists FreeRADIUS
	 *	discards; the outer request is what the NAS receives and what post-auth logs.
	 */
	while (outer->parent) outer = outer->parent;
	if (outer != request) {
		VALUE_PAIR *vp = fr_pair_make(outer->packet, &outer->packet->vps, "Module-Failure-Message", NULL, T_OP_ADD);

		if (vp) fr_pair_value_sprintf(vp, "%s: %s", sc->module, reason);
	}
	if (*reply_message) fr_pair_make(outer->reply, &outer->reply->vps, "Reply-Message", reply_message, T_OP_SET);
}

static void sink_log(void *ctx, rlm_rust_log_level level, char const *msg)
{
	REQUEST *request = ((sink_ctx *) ctx)->request;

	if (level <= RLM_RUST_LOG_WARN) RWARN("%s", msg);
	else if (level == RLM_RUST_LOG_INFO) RINFO("%s", msg);
	else RDEBUG("%s", msg);
}

/* The check's verdict as a module return code: an accept that added reply attributes (the
 * verified identity, a VLAN) is "updated", as FreeRADIUS modules say. */
static rlm_rcode_t check_request(rlm_rust_t const *inst, REQUEST *request)
{
	VALUE_PAIR *vps = request->packet->vps;
	rlm_rust_capture capture;
	rlm_rust_request req;
	sink_ctx sc = { .request = request, .module = inst->name, .added = false };
	rlm_rust_sink sink = {
		.ctx = &sc, .add_pair = sink_add_pair, .set_reason = sink_set_reason, .log = sink_log,
	};

	rlm_rust_hook_collect(request, &capture);
	req.user_name = attr_str(vps, PW_USER_NAME);
	req.called_station_id = attr_str(vps, PW_CALLED_STATION_ID);
	req.wants_cui = fr_pair_find_by_num(vps, PW_CHARGEABLE_USER_IDENTITY, 0, TAG_ANY) != NULL;
	req.stage = request->parent ? RLM_RUST_STAGE_TLS_CHECK : RLM_RUST_STAGE_POST_AUTH;
	req.capture = &capture;

	switch (rlm_rust_check(inst->core, &req, &sink)) {
	case RLM_RUST_ACCEPT: return sc.added ? RLM_MODULE_UPDATED : RLM_MODULE_OK;
	case RLM_RUST_REJECT: return RLM_MODULE_REJECT;
	default: return RLM_MODULE_FAIL;
	}
}

/*
 * A post-auth reject must not leave EAP-Success in the Access-Reject (ARCHITECTURE.md):
 * rewrite the EAP code to Failure and strip the keying material so no session key leaves us.
 */
static void make_eap_failure(REQUEST *request)
{
	VALUE_PAIR *vp = fr_pair_find_by_num(request->reply->vps, PW_EAP_MESSAGE, 0, TAG_ANY);
	DICT_ATTR const *da;

	if (vp && (vp->vp_length >= 4) && (vp->vp_octets[0] == EAP_CODE_SUCCESS)) {
		uint8_t eap[4];

		memcpy(eap, vp->vp_octets, sizeof(eap));
		eap[0] = EAP_CODE_FAILURE;
		eap[2] = 0;
		eap[3] = 4;
		fr_pair_value_memcpy(vp, eap, sizeof(eap));
		RDEBUG("rust: rewrote EAP-Success to EAP-Failure in the reject");
	}
	fr_pair_delete_by_num(&request->reply->vps, MS_MPPE_SEND_KEY, VENDOR_MICROSOFT, TAG_ANY);
	fr_pair_delete_by_num(&request->reply->vps, MS_MPPE_RECV_KEY, VENDOR_MICROSOFT, TAG_ANY);
	da = dict_attrbyname("EAP-MSK");
	if (da) fr_pair_delete_by_num(&request->reply->vps, da->attr, da->vendor, TAG_ANY);
	da = dict_attrbyname("EAP-EMSK");
	if (da) fr_pair_delete_by_num(&request->reply->vps, da->attr, da->vendor, TAG_ANY);
}

#define EAP_CODE_RESPONSE 2
#define EAP_TYPE_IDENTITY 1

/* The request carries an EAP-Response/Identity: the first message of a conversation. */
static bool is_eap_identity(REQUEST *request)
{
	VALUE_PAIR *vp = fr_pair_find_by_num(request->packet->vps, PW_EAP_MESSAGE, 0, TAG_ANY);

	return vp && (vp->vp_length >= 5) && (vp->vp_octets[0] == EAP_CODE_RESPONSE) &&
	       (vp->vp_octets[4] == EAP_TYPE_IDENTITY);
}

/*
 * authorize has two jobs, told apart by where it runs:
 *  - in a virtual server a module runs on a child request (the check-eap-tls server of
 *    eap's "virtual_server"): the check; a reject there becomes a real EAP-Failure;
 *  - in the outer server, before eap: only a hint to the sync that a device of this name
 *    is starting a conversation (on-demand discovery). It decides nothing: noop.
 */
static rlm_rcode_t CC_HINT(nonnull) mod_authorize(void *instance, REQUEST *request)
{
	rlm_rust_t const *inst = instance;

	if (!request->parent) {
		if (is_eap_identity(request)) {
			rlm_rust_str name = attr_str(request->packet->vps, PW_USER_NAME);

			if (rlm_rust_discover(inst->core, &name)) RDEBUG2("rust: looking up %.*s", (int) name.len, name.ptr);
		}
		return RLM_MODULE_NOOP;
	}
	return check_request(inst, request);
}

static rlm_rcode_t CC_HINT(nonnull) mod_post_auth(void *instance, REQUEST *request)
{
	rlm_rust_t const *inst = instance;
	rlm_rcode_t rcode = check_request(inst, request);

	if ((rcode != RLM_MODULE_OK) && (rcode != RLM_MODULE_UPDATED) && inst->eap_failure_on_reject) {
		make_eap_failure(request);
	}
	return rcode;
}

extern module_t rlm_rust;
module_t rlm_rust = {
	.magic = RLM_MODULE_INIT,
	.name = "rust",
	.type = RLM_TYPE_THREAD_SAFE | RLM_TYPE_HUP_SAFE,
	.inst_size = sizeof(rlm_rust_t),
	.config = module_config,
	.bootstrap = mod_bootstrap,
	.instantiate = mod_instantiate,
	.detach = mod_detach,
	.methods = {
		[MOD_AUTHORIZE] = mod_authorize,
		[MOD_POST_AUTH] = mod_post_auth,
	},
};
