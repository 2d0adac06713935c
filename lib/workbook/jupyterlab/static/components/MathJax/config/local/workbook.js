/*
 * MathJax 2 settings for both front ends the project serves: named in the page's MathJax config as
 * local/workbook, and served as [MathJax]/config/local/workbook.js (JupyterLab: a handler of
 * serve.py; the classic notebook: this folder is one of its extra static paths, searched before
 * its own static/components/MathJax, which is Debian's libjs-mathjax).
 *
 * Both front ends typeset every rendered markdown cell and HTML output with its own Hub.Typeset
 * call, and MathJax 2 pauses processSectionDelay (50 ms) four times in each, between its phases. A
 * chapter of the workbook makes about a hundred such calls: the pauses alone kept its formulas raw
 * for 10-20 s after it opened. Without them the same formulas are typeset in a few seconds.
 */
MathJax.Hub.processSectionDelay = 0;
MathJax.Ajax.loadComplete('[MathJax]/config/local/workbook.js');
