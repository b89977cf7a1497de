/* settings.c — one case of a run from its settings (settings.h): the problem it computes and the
 * exec it runs with, validated before anything is computed. */
#include "tasks/settings.h"

#include <stdio.h>
#include <string.h>

#include "comm/layout.h"

int settings_docs(const attn_opts_t *o, int64_t n_k, const int64_t **doc, int64_t *n_docs, attn_err_t *err) {
    *doc = NULL, *n_docs = 0;
    int given = (o->n_doc_lens > 0) + (o->cu_seqlens[0] != 0) + (o->docs.dist != DOCS_NONE);
    if (given > 1)
        return attn_fail(err, ATTN_EUSAGE, "give one of --doc-lens, --cu-seqlens and --docs, not %d", given);
    if (o->n_doc_lens)
        return docs_from_lens(o->doc_lens, o->n_doc_lens, n_k, doc, n_docs, err);
    if (o->cu_seqlens[0])
        return docs_from_npy(o->cu_seqlens, n_k, doc, n_docs, err);
    if (o->docs.dist != DOCS_NONE)
        return docs_random(&o->docs, n_k, o->seed, doc, n_docs, err);
    return ATTN_OK;
}

int settings_problem(const attn_opts_t *o, int64_t n_k, int64_t n_q, attn_mask_t mask, attn_problem_t *p,
                     attn_err_t *err) {
    *p = (attn_problem_t){.batch = o->batch, .heads = o->heads, .kv_heads = o->kv_heads, .head_dim = o->head_dim,
                          .n_q = n_q, .n_k = n_k, .mask = mask, .window = mask == ATTN_MASK_WINDOW ? o->window : 0,
                          .scale = o->scale, .dtype = o->dtype, .block_q = o->block_q, .block_k = o->block_k};
    ATTN_TRY(settings_docs(o, n_k, &p->doc, &p->n_docs, err));
    return problem_validate(p, err);
}

attn_exec_t settings_exec(const attn_opts_t *o) {
    attn_exec_t x = {.threads = o->threads, .device = o->device, .ranks = o->ranks, .comm_timeout = o->comm_timeout,
                     .layout = -1, .fault = o->fault, .fault_rank = o->fault_rank, .fault_step = o->fault_step,
                     .fault_delay_s = o->fault_delay_s, .fault_backward = o->fault_backward, .ulysses_degree = o->ulysses_degree,
                     .merge = o->merge_dtype == ATTN_BF16 ? ATTN_MERGE_BF16 : ATTN_MERGE_F32};
    transport_parse(o->transport, &x.transport); /* checked when the flag was parsed */
    attn_layout_kind_t k;
    if (layout_parse(o->layout, &k))
        x.layout = (int)k;
    snprintf(x.local_backend, sizeof x.local_backend, "%s", o->local_backend[0] ? o->local_backend : "blockwise");
    x.approx_window = o->window;
    x.sinks = o->n_sinks ? o->sinks[0] : 0;
    x.topk = o->n_topk ? o->topk[0] : 0;
    x.topk_pct = o->n_topk ? o->topk_pct[0] : 0;
    return x;
}

int settings_validate_run(const attn_opts_t *o, attn_err_t *err) {
    if (!strcmp(o->task, "needle") && (o->n_doc_lens || o->cu_seqlens[0] || o->docs.dist != DOCS_NONE))
        return attn_fail(err, ATTN_EUSAGE, "the needle task builds its own prompts: it takes no packed documents");
    for (int s = 0; s < o->n_seq_len; s++)
        for (int q = 0; q < (o->n_q_len ? o->n_q_len : 1); q++)
            for (int m = 0; m < o->n_masks; m++) {
                attn_problem_t p;
                int64_t nq = o->n_q_len ? o->q_len[q] : o->seq_len[s];
                ATTN_TRY(settings_problem(o, o->seq_len[s], nq, o->masks[m], &p, err));
            }
    attn_exec_t x = settings_exec(o);
    return exec_validate(&x, err);
}

const char *direction_name(int direction) {
    static const char *names[] = {"forward", "backward", "both"};
    return direction >= 0 && direction <= 2 ? names[direction] : "forward";
}
