/* Runs a model compiled ahead of time by kiln, from C.
 *
 *   kiln compile models/mlp.onnx --target x86_64 -o build/aot
 *   cc -O2 -Ibuild/aot examples/aot/main.c build/aot/mlp.o -lm -o build/aot/mlp_run
 *   build/aot/mlp_run build/aot/mlp.weights input.npy output.npy
 *
 * Reads the weights file and one f32 .npy input, runs the model once, writes
 * the output as .npy. Built for the example model `mlp` (one input, one output);
 * another model only changes the header and the `kiln_<name>_run` call.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

static void *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = aligned_alloc(64, ((size_t)n + 63) / 64 * 64 + 64);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "%s: read failed\n", path); exit(1); }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The data of a version 1 .npy file (the header is not checked beyond its length). */
static const void *npy_data(const uint8_t *file, size_t len, size_t want) {
    if (len < 10 || memcmp(file, "\x93NUMPY", 6) != 0) { fprintf(stderr, "not a .npy file\n"); exit(1); }
    size_t header = 10 + (size_t)file[8] + 256 * (size_t)file[9];
    if (len - header != want) { fprintf(stderr, "input has %zu bytes, the model wants %zu\n", len - header, want); exit(1); }
    return file + header;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s MODEL.weights INPUT.npy OUTPUT.npy\n", argv[0]); return 2; }
    size_t wlen, ilen;
    void *weights = read_file(argv[1], &wlen);
    if (wlen != KILN_MLP_WEIGHTS_BYTES) { fprintf(stderr, "weights file has %zu bytes, expected %u\n", wlen, KILN_MLP_WEIGHTS_BYTES); return 1; }
    uint8_t *in_file = read_file(argv[2], &ilen);
    const size_t in_bytes = 64 * 1024 * 4, out_bytes = 64 * 1024 * 4;
    void *input = aligned_alloc(64, in_bytes);
    memcpy(input, npy_data(in_file, ilen, in_bytes), in_bytes);
    void *output = aligned_alloc(64, out_bytes);
    void *work = aligned_alloc(64, KILN_MLP_WORK_BYTES);
    const void *inputs[] = {input};
    void *outputs[] = {output};
    kiln_mlp_run(inputs, outputs, weights, work);

    char header[128];
    int n = snprintf(header + 10, sizeof header - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (64, 1024), }");
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    memset(header + 10 + n, ' ', padded - total);
    header[padded - 1] = '\n';
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    header[8] = (char)((padded - 10) & 0xff);
    header[9] = (char)((padded - 10) >> 8);
    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(header, 1, padded, f) != padded || fwrite(output, 1, out_bytes, f) != out_bytes) { perror(argv[3]); return 1; }
    fclose(f);
    return 0;
}
