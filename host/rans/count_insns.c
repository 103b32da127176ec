/*
 * count_insns: guest instructions executed, from qemu user mode's log
 *   qemu-aarch64 -d in_asm,exec,nochain PROGRAM ... 2>&1 >/dev/null | count_insns
 * `in_asm` prints every translation block (TB) once, when it is translated: its guest
 * instructions, one line "0x<pc>:  <encoding>  <mnemonic>" each; `exec` with `nochain`
 * prints "Trace <cpu>: <host ptr> [<cs_base>/<pc>/<flags>/<cflags>] <symbol>" before every
 * execution of a TB. The count is the sum over executions of the size of the TB at that pc
 * (its latest translation). A TB left early (a fault, a signal) would be over-counted; user
 * mode code that only computes and makes a few system calls has none. Prints the count.
 * (Debian's qemu-user ships no TCG plugins such as libinsn.so; this reads qemu's own log.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t *keys;
static uint32_t *vals;
static size_t cap = 1 << 16, used;

static size_t slot(uint64_t k) {
    size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
    while (keys[i] && keys[i] != k) i = (i + 1) & (cap - 1);
    return i;
}

static void put(uint64_t k, uint32_t v) {
    if (2 * (used + 1) > cap) { /* grow */
        uint64_t *ok = keys;
        uint32_t *ov = vals;
        size_t oc = cap;
        cap *= 2;
        keys = calloc(cap, 8);
        vals = calloc(cap, 4);
        if (!keys || !vals) exit(2);
        for (size_t i = 0; i < oc; i++)
            if (ok[i]) {
                size_t j = slot(ok[i]);
                keys[j] = ok[i];
                vals[j] = ov[i];
            }
        free(ok);
        free(ov);
    }
    size_t i = slot(k);
    if (!keys[i]) used++;
    keys[i] = k;
    vals[i] = v;
}

int main(void) {
    keys = calloc(cap, 8);
    vals = calloc(cap, 4);
    static char line[4096];
    uint64_t total = 0, execs = 0, unknown = 0, tb_pc = 0;
    uint32_t tb_n = 0;
    int in_tb = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (in_tb) {
            unsigned long long pc;
            if (line[0] == '0' && line[1] == 'x' && sscanf(line, "0x%llx:", &pc) == 1) {
                if (tb_n++ == 0) tb_pc = pc;
                continue;
            }
            if (tb_n) put(tb_pc + 1, tb_n); /* +1: 0 marks an empty slot */
            in_tb = 0;
        }
        if (!strncmp(line, "IN:", 3)) {
            in_tb = 1;
            tb_n = 0;
        } else if (!strncmp(line, "Trace ", 6)) {
            char *p = strchr(line, '[');
            p = p ? strchr(p, '/') : NULL;
            if (!p) continue;
            uint64_t pc = strtoull(p + 1, NULL, 16);
            size_t i = slot(pc + 1);
            execs++;
            if (keys[i]) total += vals[i];
            else unknown++;
        }
    }
    printf("%llu instructions %llu blocks %llu unknown\n", (unsigned long long)total, (unsigned long long)execs,
           (unsigned long long)unknown);
    return unknown ? 1 : 0;
}
