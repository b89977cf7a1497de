# embed.cmake — build step: turns a file into a C array (IN → OUT as `const unsigned char NAME[]`
# and `const size_t NAME_len`), so the report command carries its page template and the chart
# library (Debian's packaged copy) inside the executable and needs no network or path at run time.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){32})" "\\1\n" body "${body}")
file(WRITE ${OUT}.tmp "/* generated from ${IN} by cmake/embed.cmake */\n#include <stddef.h>\nconst unsigned char ${NAME}[] = {\n${body}0x00};\nconst size_t ${NAME}_len = ${len};\n")
file(RENAME ${OUT}.tmp ${OUT})
