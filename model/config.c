/* config.c — see config.h. One table lists the config.json keys read, with their
 * type and whether they are required, so the reader and its messages cannot drift apart. */
#include "model/config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "model/rope.h"

void model_config_defaults(model_config_t *c) {
    *c = (model_config_t){.hidden_size = 512, .num_hidden_layers = 4, .num_attention_heads = 8,
                          .num_key_value_heads = 2, .intermediate_size = 1376, .vocab_size = 32000,
                          .head_dim = 64, .rope_theta = 10000.0, .rotary_fraction = 1.0, .rms_norm_eps = 1e-5,
                          .max_position_embeddings = 0};
}

int model_config_validate(const model_config_t *c, attn_err_t *err) {
    const struct {
        const char *key;
        int v;
    } sizes[] = {
        {"hidden_size", c->hidden_size},           {"num_hidden_layers", c->num_hidden_layers},
        {"num_attention_heads", c->num_attention_heads}, {"num_key_value_heads", c->num_key_value_heads},
        {"intermediate_size", c->intermediate_size}, {"vocab_size", c->vocab_size},
        {"head_dim", c->head_dim},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v < 1)
            return attn_fail(err, ATTN_EUSAGE, "%s must be positive (got %d)", sizes[i].key, sizes[i].v);
    if (c->num_attention_heads % c->num_key_value_heads)
        return attn_fail(err, ATTN_EUSAGE,
                         "num_attention_heads (%d) must be a multiple of num_key_value_heads (%d) for grouped-query "
                         "attention",
                         c->num_attention_heads, c->num_key_value_heads);
    if (c->head_dim > 256)
        return attn_fail(err, ATTN_EUSAGE, "head_dim %d is above 256, the largest the attention backends take",
                         c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return attn_fail(err, ATTN_EUSAGE, "rope_theta must be a positive number (got %g)", c->rope_theta);
    if (!(c->rotary_fraction > 0) || c->rotary_fraction > 1)
        return attn_fail(err, ATTN_EUSAGE, "partial_rotary_factor must be in (0, 1] (got %g)", c->rotary_fraction);
    if (rope_rot_dims(c->head_dim, c->rotary_fraction) < 0)
        return attn_fail(err, ATTN_EUSAGE,
                         "partial_rotary_factor %g of head_dim %d gives %g rotary dims; they must be an even whole "
                         "number ≥ 2 (they rotate in pairs)",
                         c->rotary_fraction, c->head_dim, c->rotary_fraction * c->head_dim);
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
        return attn_fail(err, ATTN_EUSAGE, "rms_norm_eps must be a positive number (got %g)", c->rms_norm_eps);
    if (c->max_position_embeddings < 0)
        return attn_fail(err, ATTN_EUSAGE, "max_position_embeddings must not be negative (got %d)",
                         c->max_position_embeddings);
    return ATTN_OK;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* Keys that change what the model computes but that it does not implement: refusing them beats
 * loading real weights into a silently different model. */
static int check_unsupported(const char *path, json_t *root, attn_err_t *err) {
    json_t *scaling = json_object_get(root, "rope_scaling");
    if (scaling && !json_is_null(scaling)) {
        json_t *kind = json_is_object(scaling) ? json_object_get(scaling, "rope_type") : NULL;
        if (json_is_object(scaling) && !kind)
            kind = json_object_get(scaling, "type");
        if (!json_is_string(kind) || strcmp(json_string_value(kind), "default"))
            return attn_fail(err, ATTN_EUSAGE,
                             "%s: key 'rope_scaling' (%s) is not supported: this model implements plain RoPE only",
                             path, json_is_string(kind) ? json_string_value(kind) : json_kind(scaling));
    }
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return attn_fail(err, ATTN_EUSAGE, "%s: key 'hidden_act' (%s) is not supported: the MLP is SwiGLU (silu)",
                         path, json_is_string(act) ? json_string_value(act) : json_kind(act));
    return ATTN_OK;
}

int model_config_load(const char *path, model_config_t *c, attn_err_t *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_cannot_open_file) /* errno is still fopen's */
            return attn_fail(err, ATTN_EUSAGE, "%s: cannot open the model config: %s", path, strerror(errno));
        return attn_fail(err, ATTN_EUSAGE, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                         jerr.column);
    }
    int rc = ATTN_OK;
    if (!json_is_object(root)) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: the model config must be a JSON object, not %s", path, json_kind(root));
        goto done;
    }
    /* An absent (or null) optional key keeps the value here. */
    model_config_t m = {.rope_theta = 10000.0, .rotary_fraction = 1.0, .rms_norm_eps = 1e-5};
    const struct {
        const char *key;
        int required;
        int *i;    /* integer key */
        double *d; /* number key */
    } keys[] = {
        {"hidden_size", 1, &m.hidden_size, NULL},
        {"num_hidden_layers", 1, &m.num_hidden_layers, NULL},
        {"num_attention_heads", 1, &m.num_attention_heads, NULL},
        {"num_key_value_heads", 0, &m.num_key_value_heads, NULL},
        {"intermediate_size", 1, &m.intermediate_size, NULL},
        {"vocab_size", 1, &m.vocab_size, NULL},
        {"head_dim", 0, &m.head_dim, NULL},
        {"max_position_embeddings", 0, &m.max_position_embeddings, NULL},
        {"rope_theta", 0, NULL, &m.rope_theta},
        {"partial_rotary_factor", 0, NULL, &m.rotary_fraction},
        {"rms_norm_eps", 0, NULL, &m.rms_norm_eps},
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && rc == ATTN_OK; k++) {
        json_t *v = json_object_get(root, keys[k].key);
        if (!v || json_is_null(v)) {
            if (keys[k].required)
                rc = attn_fail(err, ATTN_EUSAGE, "%s: key '%s' is missing", path, keys[k].key);
        } else if (keys[k].i) {
            if (!json_is_integer(v))
                rc = attn_fail(err, ATTN_EUSAGE, "%s: key '%s' must be an integer, not %s", path, keys[k].key,
                               json_kind(v));
            else if (json_integer_value(v) < INT_MIN || json_integer_value(v) > INT_MAX)
                rc = attn_fail(err, ATTN_EUSAGE, "%s: key '%s' (%lld) is out of range", path, keys[k].key,
                               (long long)json_integer_value(v));
            else
                *keys[k].i = (int)json_integer_value(v);
        } else {
            if (!json_is_number(v))
                rc = attn_fail(err, ATTN_EUSAGE, "%s: key '%s' must be a number, not %s", path, keys[k].key,
                               json_kind(v));
            else
                *keys[k].d = json_number_value(v);
        }
    }
    if (rc == ATTN_OK)
        rc = check_unsupported(path, root, err);
    if (rc != ATTN_OK)
        goto done;
    json_t *kv = json_object_get(root, "num_key_value_heads"), *hd = json_object_get(root, "head_dim");
    if (!kv || json_is_null(kv)) /* older llama configs: multi-head attention */
        m.num_key_value_heads = m.num_attention_heads;
    if ((!hd || json_is_null(hd)) && m.num_attention_heads > 0) {
        if (m.hidden_size % m.num_attention_heads) {
            rc = attn_fail(err, ATTN_EUSAGE,
                           "%s: key 'hidden_size' (%d) is not a multiple of 'num_attention_heads' (%d) and no "
                           "'head_dim' is given",
                           path, m.hidden_size, m.num_attention_heads);
            goto done;
        }
        m.head_dim = m.hidden_size / m.num_attention_heads;
    }
    attn_err_t sub = {0};
    if (model_config_validate(&m, &sub) != ATTN_OK)
        rc = attn_fail(err, sub.code, "%s: %s", path, sub.msg);
    else
        *c = m;
done:
    json_decref(root);
    return rc;
}
