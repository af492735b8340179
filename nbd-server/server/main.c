/* main.c - placeholder until the server lands. */
#include <stdio.h>
int main(void) { fprintf(stderr, "dism-nbd-server: not built yet\n"); return 1; }
