// tokenizer.cc — SentencePiece behind the C API of tokenizer.h: the only C++ in the product.
// Every entry point catches everything, so no exception crosses into C; SentencePiece's own
// util::Status failures become attn_err_t messages.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
#include "core/outfile.h"
#include "datasets/tokenizer.h"
}

struct attn_tokenizer {
    sentencepiece::SentencePieceProcessor sp;
    std::string path;
};

template <typename F> static int guarded(attn_err_t *err, const char *what, F &&f) {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return attn_fail(err, ATTN_ERUNTIME, "%s: out of memory", what);
    } catch (const std::exception &e) {
        return attn_fail(err, ATTN_ERUNTIME, "%s: %s", what, e.what());
    } catch (...) {
        return attn_fail(err, ATTN_ERUNTIME, "%s: unknown C++ exception", what);
    }
}

extern "C" int tok_load(const char *path, attn_tokenizer_t **out, attn_err_t *err) {
    *out = nullptr;
    /* A path the user gave that is not a model is bad input (exit 2, like --haystack); checked
     * first because SentencePiece reads a directory or a device without saying which path. */
    struct stat sb;
    if (stat(path, &sb) != 0)
        return attn_fail(err, ATTN_EUSAGE, "tokenizer %s: cannot open it: %s", path, std::strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return attn_fail(err, ATTN_EUSAGE, "tokenizer %s: not a regular file (%s)", path,
                         S_ISDIR(sb.st_mode) ? "a directory" : "a device, pipe or socket");
    return guarded(err, "tokenizer", [&] {
        auto *t = new attn_tokenizer;
        t->path = path;
        auto st = t->sp.Load(path);
        if (!st.ok()) {
            delete t;
            return attn_fail(err, ATTN_EUSAGE, "tokenizer %s: not a SentencePiece model: %s", path,
                             st.ToString().c_str());
        }
        *out = t;
        return (int)ATTN_OK;
    });
}

extern "C" void tok_free(attn_tokenizer_t *t) { delete t; }

extern "C" int tok_vocab_size(const attn_tokenizer_t *t) { return t->sp.GetPieceSize(); }

extern "C" int tok_encode(const attn_tokenizer_t *t, const char *text, size_t len, int32_t **ids, size_t *n,
                          attn_err_t *err) {
    *ids = nullptr, *n = 0;
    return guarded(err, "tokenizer encode", [&] {
        std::vector<int> v;
        auto st = t->sp.Encode(std::string(text, len), &v);
        if (!st.ok())
            return attn_fail(err, ATTN_ERUNTIME, "tokenizer %s: encode: %s", t->path.c_str(), st.ToString().c_str());
        *ids = static_cast<int32_t *>(std::malloc((v.size() + 1) * sizeof(int32_t)));
        if (!*ids)
            return attn_fail(err, ATTN_ERUNTIME, "tokenizer encode: out of memory for %zu ids", v.size());
        for (size_t i = 0; i < v.size(); i++)
            (*ids)[i] = v[i];
        *n = v.size();
        return (int)ATTN_OK;
    });
}

extern "C" int tok_decode(const attn_tokenizer_t *t, const int32_t *ids, size_t n, char **text, attn_err_t *err) {
    *text = nullptr;
    return guarded(err, "tokenizer decode", [&] {
        int size = t->sp.GetPieceSize();
        std::vector<int> v(ids, ids + n);
        for (size_t i = 0; i < n; i++)
            if (v[i] < 0 || v[i] >= size)
                return attn_fail(err, ATTN_EUSAGE, "tokenizer decode: id %d at %zu is outside the vocabulary (0..%d)", v[i],
                                 i, size - 1);
        std::string s;
        auto st = t->sp.Decode(v, &s);
        if (!st.ok())
            return attn_fail(err, ATTN_ERUNTIME, "tokenizer %s: decode: %s", t->path.c_str(), st.ToString().c_str());
        *text = static_cast<char *>(std::malloc(s.size() + 1));
        if (!*text)
            return attn_fail(err, ATTN_ERUNTIME, "tokenizer decode: out of memory");
        std::memcpy(*text, s.data(), s.size());
        (*text)[s.size()] = '\0';
        return (int)ATTN_OK;
    });
}

extern "C" const char *tok_id_to_piece(const attn_tokenizer_t *t, int32_t id) {
    if (id < 0 || id >= t->sp.GetPieceSize())
        return nullptr;
    return t->sp.IdToPiece(id).c_str(); // a reference into the loaded model: lives as long as t
}

extern "C" int32_t tok_piece_to_id(const attn_tokenizer_t *t, const char *piece) {
    try {
        int id = t->sp.PieceToId(piece); // the unknown id for pieces it lacks, so check the round trip
        return id >= 0 && t->sp.IdToPiece(id) == piece ? id : -1;
    } catch (...) {
        return -1;
    }
}

// The trained model's bytes (a std::string) as an outfile_fill_fn (C linkage, as its type says).
extern "C" {
static int fill_model(FILE *f, void *proto) {
    const std::string *p = static_cast<const std::string *>(proto);
    return std::fwrite(p->data(), 1, p->size(), f) == p->size() ? 0 : -1;
}
}

extern "C" int tok_train(const char *corpus_path, const char *model_prefix, int vocab_size,
                         const char *const *user_symbols, int n_user_symbols, attn_err_t *err) {
    return guarded(err, "tokenizer train", [&] {
        // One thread, every sentence, no shuffling, every character kept (the default coverage
        // of 0.9995 drops the KJV's rare capitals such as 'Y' to <unk>): the same corpus gives the
        // same bytes. The model comes back in memory — a model written by SentencePiece records
        // its output path, which would make two build trees differ — and is written here,
        // atomically. A key → value map, not a flag string, so paths with spaces pass whole.
        std::unordered_map<std::string, std::string> args = {
            {"input", corpus_path}, {"vocab_size", std::to_string(vocab_size)}, {"model_type", "unigram"},
            {"character_coverage", "1.0"}, {"num_threads", "1"}, {"input_sentence_size", "0"},
            {"shuffle_input_sentence", "false"}, {"minloglevel", "2"}};
        std::string syms;
        for (int i = 0; i < n_user_symbols; i++) {
            if (std::strchr(user_symbols[i], ','))
                return attn_fail(err, ATTN_EUSAGE, "tokenizer train: user symbol '%s' has a comma", user_symbols[i]);
            syms += (i ? "," : "") + std::string(user_symbols[i]);
        }
        if (!syms.empty())
            args["user_defined_symbols"] = syms;
        std::string proto;
        auto st = sentencepiece::SentencePieceTrainer::Train(args, nullptr, &proto);
        if (!st.ok())
            return attn_fail(err, ATTN_ERUNTIME, "tokenizer train on %s: %s", corpus_path, st.ToString().c_str());
        std::string path = std::string(model_prefix) + ".model";
        return outfile_write(path.c_str(), fill_model, &proto, err);
    });
}
