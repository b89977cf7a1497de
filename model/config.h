/* config.h — the shape of the shared llama-style decoder (model.h): sizes, heads, RoPE base,
 * partial rotary, RMSNorm epsilon; read from a Hugging Face config.json or taken from
 * model_config_defaults, a small model that runs in seconds on a CPU. */
#pragma once
#include "core/common.h"

typedef struct {
    int hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size, vocab_size;
    int head_dim;                /* hidden_size / num_attention_heads unless the file gives "head_dim" */
    double rope_theta;           /* default 10000 */
    double rotary_fraction;      /* "partial_rotary_factor", default 1.0: the first fraction·head_dim
                                  * dims rotate (an even count) */
    double rms_norm_eps;         /* default 1e-5 */
    int max_position_embeddings; /* informational, default 0 */
} model_config_t;

/* hidden 512, 4 layers, 8 heads (head_dim 64), 2 kv heads, intermediate 1376, vocab 32000. */
void model_config_defaults(model_config_t *c);

/* HF config.json: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size and
 * vocab_size are required; num_key_value_heads defaults to num_attention_heads (as in HF),
 * head_dim to hidden_size / num_attention_heads (which must then divide exactly). Keys this
 * model cannot honour are refused rather than ignored: a non-default rope_scaling and a
 * hidden_act other than silu. The result is validated; ATTN_EUSAGE with "PATH: key …" on error. */
int model_config_load(const char *path, model_config_t *c, attn_err_t *err);

/* Positive sizes, heads % kv_heads == 0, head_dim ≤ 256, θ > 0, 0 < fraction ≤ 1 with
 * fraction·head_dim even and ≥ 2, eps > 0. head_dim·heads need not equal hidden_size: the
 * projections are (heads·head_dim, hidden) whatever head_dim is, and configs that give head_dim
 * (Gemma, Mistral-Nemo) differ; the load checks the derived case. */
int model_config_validate(const model_config_t *c, attn_err_t *err);
