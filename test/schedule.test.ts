import { expect } from 'chai';
import { linearSchedule } from '../lib';
describe('schedule (smoke)', () => {
  it('linear schedule has T + 1 entries', () => {
    expect(linearSchedule(10).betas.length).to.equal(11);
  });
});
