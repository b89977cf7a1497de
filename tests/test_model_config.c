/* test_model_config.c — model configs: the defaults validate; real Hugging Face config.json
 * files (TinyLlama's, one with an explicit head_dim, one with partial rotary) load with the right
 * values; every bad file fails with ATTN_EUSAGE, leaves the config untouched, and names the file
 * and the offending key. usage: test_model_config SCRATCH_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "tests/check.h"

static char dir[900];


static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "test_model_config: cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* TinyLlama-1.1B's config.json as published, keys and all. */
static const char tinyllama[] = "{\n"
                                "  \"architectures\": [\"LlamaForCausalLM\"],\n"
                                "  \"attention_bias\": false,\n"
                                "  \"bos_token_id\": 1,\n"
                                "  \"eos_token_id\": 2,\n"
                                "  \"hidden_act\": \"silu\",\n"
                                "  \"hidden_size\": 2048,\n"
                                "  \"initializer_range\": 0.02,\n"
                                "  \"intermediate_size\": 5632,\n"
                                "  \"max_position_embeddings\": 2048,\n"
                                "  \"model_type\": \"llama\",\n"
                                "  \"num_attention_heads\": 32,\n"
                                "  \"num_hidden_layers\": 22,\n"
                                "  \"num_key_value_heads\": 4,\n"
                                "  \"pretraining_tp\": 1,\n"
                                "  \"rms_norm_eps\": 1e-05,\n"
                                "  \"rope_scaling\": null,\n"
                                "  \"rope_theta\": 10000.0,\n"
                                "  \"tie_word_embeddings\": false,\n"
                                "  \"torch_dtype\": \"bfloat16\",\n"
                                "  \"transformers_version\": \"4.35.0\",\n"
                                "  \"use_cache\": true,\n"
                                "  \"vocab_size\": 32000\n"
                                "}\n";

typedef struct {
    const char *name, *json;
    model_config_t want;
} good_case_t;

static void check_good(const good_case_t *g) {
    char path[1000];
    snprintf(path, sizeof path, "%s/model_config_good.json", dir);
    write_file(path, g->json);
    attn_err_t err = {0};
    model_config_t c;
    memset(&c, 0x5a, sizeof c);
    const model_config_t *w = &g->want;
    char got[1200];
    if (model_config_load(path, &c, &err) != ATTN_OK) {
        report(0, g->name, "a loaded config", err.msg);
        return;
    }
    int ok = c.hidden_size == w->hidden_size && c.num_hidden_layers == w->num_hidden_layers &&
             c.num_attention_heads == w->num_attention_heads && c.num_key_value_heads == w->num_key_value_heads &&
             c.intermediate_size == w->intermediate_size && c.vocab_size == w->vocab_size &&
             c.head_dim == w->head_dim && c.rope_theta == w->rope_theta && c.rotary_fraction == w->rotary_fraction &&
             c.rms_norm_eps == w->rms_norm_eps && c.max_position_embeddings == w->max_position_embeddings;
#define FIELDS "hidden %d layers %d heads %d kv %d inter %d vocab %d head_dim %d theta %g fraction %g eps %g maxpos %d"
    char want[600];
    snprintf(want, sizeof want, FIELDS, w->hidden_size, w->num_hidden_layers, w->num_attention_heads,
             w->num_key_value_heads, w->intermediate_size, w->vocab_size, w->head_dim, w->rope_theta,
             w->rotary_fraction, w->rms_norm_eps, w->max_position_embeddings);
    snprintf(got, sizeof got, FIELDS, c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
             c.num_key_value_heads, c.intermediate_size, c.vocab_size, c.head_dim, c.rope_theta, c.rotary_fraction,
             c.rms_norm_eps, c.max_position_embeddings);
    report(ok, g->name, want, got);
}

/* The required keys of a small valid config, minus the one a case wants to spell itself. */
#define LAYERS "\"num_hidden_layers\": 2"
#define HEADS "\"num_attention_heads\": 4"
#define INTER "\"intermediate_size\": 512"
#define VOCAB "\"vocab_size\": 1000"
#define HIDDEN "\"hidden_size\": 256"
#define BASE HIDDEN ", " LAYERS ", " HEADS ", " INTER ", " VOCAB

typedef struct {
    const char *name, *json; /* json NULL: no file at all */
    const char *key;         /* the message must contain it, and the file's path */
} bad_case_t;

static const bad_case_t bad[] = {
    {"missing file", NULL, "cannot open"},
    {"bad JSON", "{\"hidden_size\": 256,, }", "not valid JSON"},
    {"truncated JSON", "{" BASE, "not valid JSON"},
    {"top level is a list", "[1, 2]", "JSON object"},
    {"hidden_size is a string", "{\"hidden_size\": \"big\", " LAYERS ", " HEADS ", " INTER ", " VOCAB "}",
     "'hidden_size' must be an integer, not a string"},
    {"hidden_size is a real", "{\"hidden_size\": 256.0, " LAYERS ", " HEADS ", " INTER ", " VOCAB "}",
     "'hidden_size' must be an integer"},
    {"vocab_size out of int range", "{" HIDDEN ", " LAYERS ", " HEADS ", " INTER ", \"vocab_size\": 9999999999}",
     "'vocab_size' (9999999999) is out of range"},
    {"rope_theta is a string", "{" BASE ", \"rope_theta\": \"10000\"}", "'rope_theta' must be a number"},
    {"vocab_size missing", "{" HIDDEN ", " LAYERS ", " HEADS ", " INTER "}", "'vocab_size' is missing"},
    {"heads % kv_heads != 0", "{" BASE ", \"num_key_value_heads\": 3}", "num_key_value_heads"},
    {"hidden not divisible by heads", "{\"hidden_size\": 250, " LAYERS ", " HEADS ", " INTER ", " VOCAB "}",
     "'hidden_size' (250) is not a multiple of 'num_attention_heads'"},
    {"negative intermediate_size", "{" HIDDEN ", " LAYERS ", " HEADS ", \"intermediate_size\": -5, " VOCAB "}",
     "intermediate_size must be positive"},
    {"zero kv heads", "{" BASE ", \"num_key_value_heads\": 0}", "num_key_value_heads must be positive"},
    {"head_dim above 256", "{" BASE ", \"head_dim\": 512}", "head_dim 512"},
    {"odd rotary dims (0.5 of 62 = 31)", "{" BASE ", \"head_dim\": 62, \"partial_rotary_factor\": 0.5}",
     "partial_rotary_factor 0.5 of head_dim 62 gives 31 rotary dims"},
    {"fractional rotary dims (0.3 of 64)", "{" BASE ", \"partial_rotary_factor\": 0.3}", "partial_rotary_factor"},
    {"rotary fraction above 1", "{" BASE ", \"partial_rotary_factor\": 1.5}",
     "partial_rotary_factor must be in (0, 1]"},
    {"rope_theta zero", "{" BASE ", \"rope_theta\": 0}", "rope_theta must be a positive number"},
    {"rms_norm_eps zero", "{" BASE ", \"rms_norm_eps\": 0.0}", "rms_norm_eps must be a positive number"},
    {"llama3 rope_scaling", "{" BASE ", \"rope_scaling\": {\"factor\": 8.0, \"rope_type\": \"llama3\"}}",
     "'rope_scaling' (llama3) is not supported"},
    {"gelu activation", "{" BASE ", \"hidden_act\": \"gelu\"}", "'hidden_act' (gelu) is not supported"},
};

static void check_bad(int index, const bad_case_t *b) {
    char path[1000];
    snprintf(path, sizeof path, "%s/model_config_bad%d.json", dir, index);
    if (b->json)
        write_file(path, b->json);
    else
        remove(path);
    attn_err_t err = {0};
    model_config_t c, before;
    model_config_defaults(&c);
    before = c;
    int rc = model_config_load(path, &c, &err);
    int ok = rc == ATTN_EUSAGE && strstr(err.msg, path) && strstr(err.msg, b->key) && !memcmp(&c, &before, sizeof c);
    char want[1100], got[1200];
    snprintf(want, sizeof want, "ATTN_EUSAGE naming %s and \"%s\", config untouched", path, b->key);
    snprintf(got, sizeof got, "rc %d \"%s\"%s", rc, err.msg, memcmp(&c, &before, sizeof c) ? ", config changed" : "");
    char name[160];
    snprintf(name, sizeof name, "rejects %s", b->name);
    report(ok, name, want, got);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_model_config SCRATCH_DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);

    model_config_t d;
    model_config_defaults(&d);
    attn_err_t err = {0};
    report(model_config_validate(&d, &err) == ATTN_OK && d.head_dim == 64 && d.num_key_value_heads == 2 &&
               d.rope_theta == 10000 && d.rotary_fraction == 1 && d.rms_norm_eps == 1e-5,
           "defaults validate (head_dim 64, 2 kv heads, theta 1e4)", "ATTN_OK", err.msg);

    const good_case_t good[] = {
        {"TinyLlama-1.1B config.json", tinyllama,
         {2048, 22, 32, 4, 5632, 32000, 64, 10000.0, 1.0, 1e-5, 2048}},
        /* Mistral-Nemo: head_dim given, 32·128 ≠ 5120; integer rope_theta; no eps → default. */
        {"explicit head_dim, integer rope_theta",
         "{\"hidden_size\": 5120, \"num_hidden_layers\": 40, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
         " \"head_dim\": 128, \"intermediate_size\": 14336, \"vocab_size\": 131072, \"rope_theta\": 1000000}",
         {5120, 40, 32, 8, 14336, 131072, 128, 1e6, 1.0, 1e-5, 0}},
        /* Phi-2-like partial rotary: 0.4 of head_dim 80 = 32 rotated dims; no num_key_value_heads. */
        {"partial rotary 0.4, kv heads default to heads",
         "{\"hidden_size\": 2560, \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"intermediate_size\": 10240,"
         " \"vocab_size\": 51200, \"partial_rotary_factor\": 0.4, \"rms_norm_eps\": 1e-6, \"head_dim\": null}",
         {2560, 32, 32, 32, 10240, 51200, 80, 10000.0, 0.4, 1e-6, 0}},
        {"rope_scaling of type default", "{" BASE ", \"rope_scaling\": {\"rope_type\": \"default\"}}",
         {256, 2, 4, 4, 512, 1000, 64, 10000.0, 1.0, 1e-5, 0}},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        check_good(&good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_bad((int)i, &bad[i]);

    return check_summary();
}
