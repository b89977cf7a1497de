# extract_kjv.cmake — build step: writes the King James text (`bible gen1:1-rev22:21`, Debian's
# bible-kjv) to OUT via a temporary file, so an interrupted build leaves no half-written corpus.
execute_process(COMMAND ${BIBLE} gen1:1-rev22:21 OUTPUT_FILE ${OUT}.tmp RESULT_VARIABLE rc)
file(SIZE ${OUT}.tmp size)
if(NOT rc EQUAL 0 OR size LESS 1000000)
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "`${BIBLE} gen1:1-rev22:21` failed (exit ${rc}, ${size} bytes): reinstall bible-kjv")
endif()
file(RENAME ${OUT}.tmp ${OUT})
