# Turns a manual page's Markdown into go-md2man's input: its first line
# ("# NAME(SECTION)", for readers of the Markdown) becomes the title block
# go-md2man makes .TH from.  -DIN -DOUT -DNAME -DSECTION -DVERSION -DMANUAL.
file(READ ${IN} _text)
string(REGEX REPLACE "^# [^\n]*\n" "" _text "${_text}")
file(WRITE ${OUT} "% ${NAME} ${SECTION} \"\" \"blkship ${VERSION}\" \"${MANUAL}\"\n${_text}")
