/** The static pages' markdown (lib/workbook/site/html.ts): math is cut out before marked and typeset by KaTeX. */
import { expect } from 'chai';
import { MathError, renderMarkdown } from '../lib/workbook/site/html';

describe('renderMarkdown (the static pages)', () => {
  it('typesets inline math that a single line break splits, as Jupyter does; a blank line ends a $ that has no partner', () => {
    const errors: MathError[] = [];
    const html = renderMarkdown('the density $a \\propto b\n\\propto c$, then $x$.\n\nA price of $5\n\nand $6 later', errors);
    expect(errors).to.deep.equal([]);
    expect((html.match(/class="katex"/g) ?? []).length, 'two formulas typeset').to.equal(2);
    expect(html).to.include('<annotation encoding="application/x-tex">a \\propto b\n\\propto c</annotation>');
    expect(html, 'dollars in separate paragraphs stay text').to.include('<p>A price of $5</p>').and.to.include('<p>and $6 later</p>');
  });
});
